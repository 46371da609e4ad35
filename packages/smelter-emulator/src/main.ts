// The emulator as a process, started with Smelter's environment variables in place of Smelter.
import { emulatorOptionsFromEnv } from './env.js';
import { startEmulator } from './emulator.js';

const log = (entry: Record<string, unknown>) => process.stdout.write(JSON.stringify(entry) + '\n');

// Like Smelter: SIGINT ends the process at once (no flush); SIGTERM has no effect (PID 1, no handler).
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => log({ level: 'warn', msg: 'SIGTERM ignored (as Smelter does; send SIGINT)' }));

try {
  await startEmulator({
    ...emulatorOptionsFromEnv(process.env),
    log,
    onCrash: () => process.exit(101),
  });
} catch (err) {
  log({ level: 'error', msg: `failed to start: ${(err as Error).message}` });
  process.exit(1);
}
