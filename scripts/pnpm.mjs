// Runs the pnpm version pinned in package.json's packageManager, fetched from the npm registry by
// npx when it is not installed, so the README commands need nothing but Node.js.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const pinned = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).packageManager;
const version = pinned.replace(/^pnpm@/, '');
const args = process.argv.slice(2);
const local = spawnSync('pnpm', ['--version'], { encoding: 'utf8' });
const [cmd, cmdArgs] =
  local.status === 0 && local.stdout.trim() === version
    ? ['pnpm', args]
    : ['npx', ['--yes', `pnpm@${version}`, ...args]];
const result = spawnSync(cmd, cmdArgs, { stdio: 'inherit' });
process.exit(result.status ?? 1);
