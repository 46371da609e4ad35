import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * The token a server's sidecar presents on the fleet link: an HMAC of the server's name under the
 * installation's link secret. Any allocator replica holding the secret checks it without shared state,
 * and a token opens the link for its own server only.
 */
export function linkToken(secret: string, serverName: string): string {
  return createHmac('sha256', secret).update(serverName).digest('base64url');
}

export function checkLinkToken(secret: string, serverName: string, token: string): boolean {
  const want = Buffer.from(linkToken(secret, serverName));
  const got = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}
