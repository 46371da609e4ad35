// Writes the CRDs built by packages/kubernetes/src/crds.ts (compiled: run `tsc -b packages/kubernetes` first) to
// deploy/crds and the Helm chart's crds/ folder. --check fails if the committed files have drifted.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const { crdYaml, crdFiles } = await import(join(root, 'packages/kubernetes/dist/crds.js'));
const dirs = ['deploy/crds', 'deploy/helm/smelter-fleet/crds'];
const check = process.argv.includes('--check');

let stale = 0;
for (const dir of dirs) {
  mkdirSync(join(root, dir), { recursive: true });
  for (const { file, crd } of crdFiles()) {
    const path = join(root, dir, file);
    const text = crdYaml(crd);
    let old = '';
    try {
      old = readFileSync(path, 'utf8');
    } catch {
      // new file
    }
    if (old === text) continue;
    if (check) {
      console.error(`${dir}/${file} is stale: run pnpm gen:crds`);
      stale++;
    } else {
      writeFileSync(path, text);
      console.log(`wrote ${dir}/${file}`);
    }
  }
}
process.exit(stale ? 1 : 0);
