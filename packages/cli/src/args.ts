/** A mistake in how the command was called: printed with usage, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Runs a node:util parseArgs call, turning its errors into UsageErrors of `command`. */
export function parsing<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new UsageError(`${command}: ${(err as Error).message}`);
  }
}

/** `k=v` pairs from repeated flags. */
export function keyValues(flag: string, values: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values ?? []) {
    const eq = v.indexOf('=');
    if (eq <= 0) throw new UsageError(`--${flag} "${v}": expected key=value`);
    out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

export function port(flag: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new UsageError(`--${flag} "${value}": expected a port number from 0 to 65535`);
  return n;
}
