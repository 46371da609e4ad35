import { randomUUID } from 'node:crypto';
import {
  fleetAutoscaleReview,
  parseFleetAutoscaleReviewResponse,
  type FleetStatusView,
  type WebhookPolicy,
  type WebhookReply,
} from '@smelter-fleet/core';

export interface WebhookCallOptions {
  /** Aborts the call (the autoscaler stopping). */
  signal?: AbortSignal;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/**
 * POSTs an Agones FleetAutoscaleReview to the webhook and reads its answer. Never throws: a slow (over
 * `policy.timeoutMs`), failing (non-2xx, connection refused) or malformed reply becomes `{ ok: false, error }`.
 */
export async function callWebhook(
  policy: WebhookPolicy,
  fleetName: string,
  status: FleetStatusView,
  options: WebhookCallOptions = {},
): Promise<WebhookReply> {
  const uid = randomUUID();
  const timeout = AbortSignal.timeout(policy.timeoutMs);
  const signal = options.signal ? AbortSignal.any([options.signal, timeout]) : timeout;
  try {
    const res = await (options.fetch ?? fetch)(policy.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(fleetAutoscaleReview(uid, fleetName, status)),
      signal,
    });
    const text = await res.text();
    if (!res.ok)
      return { ok: false, error: `webhook ${policy.url} answered HTTP ${res.status}: ${text.slice(0, 200)}` };
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return { ok: false, error: `webhook ${policy.url} answered malformed JSON: ${text.slice(0, 200)}` };
    }
    return { ok: true, ...parseFleetAutoscaleReviewResponse(body, uid) };
  } catch (err) {
    if (timeout.aborted && !options.signal?.aborted)
      return { ok: false, error: `webhook ${policy.url} did not answer within ${policy.timeoutMs} ms` };
    const cause = (err as Error & { cause?: Error }).cause;
    return {
      ok: false,
      error: `webhook ${policy.url}: ${(err as Error).message}${cause ? ` (${cause.message})` : ''}`,
    };
  }
}
