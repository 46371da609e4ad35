// Jest runs TypeScript as native ESM through swc; workspace packages resolve to their sources.
const transform = {
  '^.+\\.ts$': ['@swc/jest', { jsc: { parser: { syntax: 'typescript' }, target: 'es2022' }, module: { type: 'es6' } }],
};
const shared = {
  extensionsToTreatAsEsm: ['.ts'],
  transform,
  testEnvironment: 'node',
  moduleNameMapper: {
    '^@smelter-fleet/([a-z-]+)$': '<rootDir>/packages/$1/src/index.ts',
    '^(\\.{1,2}/.*)\\.js$': '$1',
  },
};
export default {
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/packages/*/src/**/*.test.ts'] },
    {
      ...shared,
      displayName: 'e2e',
      testMatch: ['<rootDir>/e2e/**/*.test.ts'],
      testPathIgnorePatterns: ['/node_modules/', '<rootDir>/e2e/k8s/'],
    },
    // A real control plane (scripts/k8s-bins.sh builds it from Go modules; without Go the suite skips, loudly).
    {
      ...shared,
      displayName: 'k8s',
      testMatch: ['<rootDir>/e2e/k8s/**/*.test.ts'],
      globalSetup: '<rootDir>/e2e/k8s/global-setup.mjs',
      globalTeardown: '<rootDir>/e2e/k8s/global-teardown.mjs',
    },
  ],
};
