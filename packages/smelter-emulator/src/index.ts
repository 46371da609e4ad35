import { fileURLToPath } from 'node:url';

export { startEmulator, type EmulatorHandle, type EmulatorOptions } from './emulator.js';
export { emulatorOptionsFromEnv } from './env.js';
export { sample, spec, specPath, validator, variants, type Schema } from './spec.js';

/** The emulator's process entry (dist/main.js), also when this module runs from src/ under a test runner. */
export const emulatorMainPath = fileURLToPath(new URL('../dist/main.js', import.meta.url));
