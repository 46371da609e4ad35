import { randomBytes } from 'node:crypto';

/** A fresh per-allocation secret: 256 random bits, base64url. */
export const newToken = (): string => randomBytes(32).toString('base64url');

/** A short random lowercase suffix for server names. */
export const newSuffix = (): string => randomBytes(4).toString('hex').slice(0, 5);
