import type { EmulatorOptions } from './emulator.js';

function int(env: Record<string, string | undefined>, name: string, max: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0 || n > max)
    throw new Error(`${name}="${raw}": expected an integer from 0 to ${max}`);
  return n;
}

/** Options from Smelter's own variables plus the emulator's knobs (SMELTER_EMULATOR_*). */
export function emulatorOptionsFromEnv(env: Record<string, string | undefined>): EmulatorOptions {
  const framerate = env.SMELTER_OUTPUT_FRAMERATE;
  if (framerate !== undefined && !(Number(framerate) > 0))
    throw new Error(`SMELTER_OUTPUT_FRAMERATE="${framerate}": expected a positive number`);
  const options: EmulatorOptions = {
    apiPort: int(env, 'SMELTER_API_PORT', 65535),
    whipWhepPort: int(env, 'SMELTER_WHIP_WHEP_SERVER_PORT', 65535),
    rtmpPort: int(env, 'SMELTER_RTMP_SERVER_PORT', 65535),
    host: env.SMELTER_EMULATOR_HOST || undefined,
    instanceId: env.SMELTER_INSTANCE_ID || undefined,
    outputFramerate: framerate === undefined ? undefined : Number(framerate),
    startDelayMs: int(env, 'SMELTER_EMULATOR_START_DELAY_MS', 3_600_000),
    crashAfterMs: int(env, 'SMELTER_EMULATOR_CRASH_AFTER_MS', 86_400_000),
    hangAfterMs: int(env, 'SMELTER_EMULATOR_HANG_AFTER_MS', 86_400_000),
  };
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as EmulatorOptions;
}
