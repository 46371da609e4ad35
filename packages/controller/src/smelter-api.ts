import type { ServerRecord } from '@smelter-fleet/core';

/** The few Smelter API calls the fleet itself makes. */
export interface SmelterApi {
  /** True when `GET /status` answers 200 within `timeoutMs`. */
  healthy(server: ServerRecord, timeoutMs: number): Promise<boolean>;
  /** `POST /api/reset`: drops the whole pipeline, for recycling. Throws when Smelter refuses. */
  reset(server: ServerRecord, timeoutMs: number): Promise<void>;
}

const base = (s: ServerRecord) => `http://${s.address.includes(':') ? `[${s.address}]` : s.address}:${s.ports.api}`;

/** Smelter's HTTP API over fetch. */
export const httpSmelterApi: SmelterApi = {
  async healthy(server, timeoutMs) {
    try {
      const res = await fetch(`${base(server)}/status`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.body?.cancel();
      return res.ok;
    } catch {
      return false;
    }
  },
  async reset(server, timeoutMs) {
    const res = await fetch(`${base(server)}/api/reset`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`POST /api/reset answered ${res.status}: ${text.slice(0, 200)}`);
  },
};
