import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, jest } from '@jest/globals';
import { firstToken } from '@smelter-fleet/allocator';
// The unit tests' client: every response checked against the OpenAPI document.
import { RestTestClient } from '../packages/gateway/src/rest-testing.js';
import { start, stopAll, type Running } from './helpers.js';

jest.setTimeout(60_000);

describe('REST API of smelter-fleet up (on the gateway listener)', () => {
  const running: Running[] = [];
  afterEach(async () => {
    await stopAll(running);
  });

  it('allocate over REST with the API token; drive the composition through gateway_url; publish over WHIP only with the input bearer token', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'smelter-fleet-rest-'));
    const up = start(['up', '--allocator-port', '0', '--gateway-port', '0', '--state-dir', stateDir]);
    running.push(up);
    const base = (await up.waitFor(/REST API: (\S+)\/v1\/allocations/)).match[1]!;
    await up.waitFor(/^status local: Ready 3$/);
    const apiToken = firstToken(readFileSync(join(stateDir, 'api-token'), 'utf8'))!;
    const anonymous = new RestTestClient(base);
    const rest = new RestTestClient(base, undefined, { authorization: `Bearer ${apiToken}` });

    expect((await anonymous.call('GET', '/openapi.json')).body.openapi).toBe('3.1.0');
    expect((await anonymous.call('GET', '/v1/fleets')).status).toBe(401);
    expect((await rest.call('GET', '/v1/fleets/local')).body.fleet).toMatchObject({ name: 'local', emulated: true });

    const res = await rest.call('POST', '/v1/allocations', {
      body: { fleet: 'local', composition_id: 'rest-demo', metadata: { owner: 'e2e' } },
    });
    expect(res.status).toBe(200);
    const allocation = res.body.allocation as {
      gateway_url: string;
      token: string;
      media: Record<string, string>;
      ports: Record<string, number>;
    };
    expect(allocation.gateway_url).toBe(`${base}/v1/compositions/rest-demo/smelter`);
    expect(allocation.media.whip_url_template).toBe(`http://127.0.0.1:${allocation.ports.whip_whep}/whip/{input_id}`);

    // The backend registers a WHIP input with its own bearer token, through the gateway.
    const composition = { authorization: `Bearer ${allocation.token}`, 'content-type': 'application/json' };
    const registered = await fetch(`${allocation.gateway_url}/api/input/cam/register`, {
      method: 'POST',
      headers: composition,
      body: JSON.stringify({ type: 'whip_server', video: {}, bearer_token: 'publisher-secret' }),
    });
    expect(registered.status).toBe(200);
    expect(await registered.json()).toMatchObject({ bearer_token: 'publisher-secret', endpoint_route: '/whip/cam' });

    // A media client goes straight to the instance with the ready-made URL; without the token it is refused.
    const whip = allocation.media.whip_url_template!.replace('{input_id}', 'cam');
    const offer = 'v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n';
    const stranger = await fetch(whip, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
    expect(stranger.status).toBe(401);
    const publisher = await fetch(whip, {
      method: 'POST',
      headers: { 'content-type': 'application/sdp', authorization: 'Bearer publisher-secret' },
      body: offer,
    });
    expect(publisher.status).toBe(201);

    const listed = await rest.call('GET', '/v1/allocations?fleet=local');
    expect(listed.body.allocations.map((a: { composition_id: string }) => a.composition_id)).toEqual(['rest-demo']);
    expect((await rest.call('DELETE', '/v1/allocations/rest-demo')).status).toBe(200);
    expect((await rest.call('DELETE', '/v1/allocations/rest-demo')).status).toBe(404);
    // Released: the gateway stops routing at once.
    expect((await fetch(`${allocation.gateway_url}/status`, { headers: composition })).status).toBeGreaterThanOrEqual(
      400,
    );
  });
});
