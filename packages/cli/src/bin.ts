#!/usr/bin/env node
// The one entry point: the only place that reads process.env and process.argv.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { FleetError, parseFleetFile } from '@smelter-fleet/core';
import { readFile } from 'node:fs/promises';
import { UsageError } from './args.js';
import { allocate, CommandError, get, release, status } from './client-commands.js';
import { apply, drain, events } from './fleet-commands.js';
import { sidecarCommand } from './sidecar-command.js';
import { SIMULATE_USAGE, simulateCommand } from './simulate.js';
import { up } from './up.js';
import { allocatorCommand } from './allocator-command.js';
import { controllerCommand } from './controller-command.js';
import { gatewayCommand } from './gateway-command.js';

const USAGE = `smelter-fleet: run and use fleets of Smelter servers

Usage:
  smelter-fleet up [-f fleet.yaml] [--allocator-port 50051] [--allocator-host 127.0.0.1] [--log-level warn]
      Runs a local fleet (servers as child processes, in-memory store) and the gRPC allocator.
      --store redis://... keeps fleet state in Redis instead (shared with allocator/controller processes).
  smelter-fleet allocator --store redis://... [--allocator-port 50051] [--allocator-host 127.0.0.1] [--log-level warn]
      One stand-alone allocator replica over the shared Redis store; run several.
      --gateway-url U: the gateway's public base URL, so allocations carry their gateway_url.
  smelter-fleet gateway --store redis://... [--gateway-port 8090] [--gateway-host 127.0.0.1] [--public-url U]
      One stand-alone gateway replica: /v1/compositions/{id}/smelter/... to that composition's Smelter API
      (HTTP and /ws) for callers with its token. up runs one too (--gateway-port, --gateway-host).
      --auth-tokens FILE (or --insecure) also serves the REST API there: /v1/allocations, /v1/fleets,
      /openapi.json (with the allocator's region flags: --region, --peer, ...). up always serves it.
      --tls-cert F --tls-key F: HTTPS (re-read on change); --client-ca F: REST callers may use client certificates.
  smelter-fleet controller --store redis://... [-f fleet.yaml] [--link host:port] [--metrics-port N] [--log-level warn]
      Keeps the fleets in the shared store at size, servers as local child processes linked to an allocator.
  smelter-fleet controller --kubernetes --store redis://... --link host:port [--sidecar-image IMAGE] [--kubeconfig F]
                           [--namespace N] [--leader-election-id ID] [--lease-duration 15s] [--renew-deadline 10s]
                           [--retry-period 2s] [--pod-annotation k=v]... [--metrics-port N]
      Fleets from SmelterFleet resources, servers as pods (--link: the allocators' fleet link as pods reach it);
      replicas elect one leader on a Lease. Without --kubeconfig, the in-cluster config.
  smelter-fleet allocate --fleet <name> --composition <id> [--label k=v]... [--metadata k=v]... [--wait 10s] [--json]
                         [--region-preference a,b] [--client-region x]
  smelter-fleet release --composition <id> [--json]
  smelter-fleet get --composition <id> [--json]
  smelter-fleet status [--fleet <name>] [--json]
      Fleets, servers, rollout progress (updated/outdated) and draining servers with their time left.
  smelter-fleet apply -f fleet.yaml [--dry-run] [--json]
      Creates or changes fleets of a running fleet: scale, new template (a rollout), new policies.
  smelter-fleet drain <server>... | --fleet <name> [--reason text] [--json]
      Servers take no new composition, stop once theirs ends (never recycled) and are replaced.
  smelter-fleet events [--fleet <name>] [--server <name>] [--json]
      What the controller did: scaling, rollouts, drains, drain timeouts, replaced servers.
  smelter-fleet sidecar [--name N] [--link host:port] [--smelter-url URL] [--sdk-grpc-port 9357] [--sdk-http-port 9358]
                        [--health-period 250ms] [--failure-threshold 3] [--local] [--log-level info]
      Runs the sidecar beside a Smelter: health, composition end, the fleet link, the SDK on localhost.
      --local needs no fleet: an in-process one stands in and what it would record is logged.
  smelter-fleet supervise [sidecar flags] -- <smelter command...>
      Runs Smelter as a child with the sidecar: SIGTERM drains (waits for the composition), then SIGINT.
  ${SIMULATE_USAGE}
  smelter-fleet emulator
      Runs the Smelter emulator (a test stand-in for Smelter) with Smelter's environment variables.

Regions (README "Regions"): up and allocator take --region NAME (default local), --peer REGION=host:port
(repeatable; other regions' allocators, tried when this one cannot serve), --latency-table FILE (YAML/JSON region ->
region -> ms), --forward-timeout 2s, and for peers --peer-token-file FILE, --peer-ca/--peer-cert/--peer-key.
allocate --region-preference a,b tries only those regions, in order; --client-region x tries the nearest first.
Client commands take --allocator <host:port> (default $SMELTER_FLEET_ALLOCATOR or 127.0.0.1:50051).
Caller authentication (see README "Authentication"): up and allocator take --auth-tokens FILE (bearer tokens, one
per line, re-read on change), --tls-cert/--tls-key (TLS) with --client-ca FILE (mTLS: client certificates of these
CAs required), --link-port N (the sidecars' link, its own plaintext port under TLS), or --insecure (no check; a warning).
up without any of them keeps a generated API token in .smelter-fleet/api-token (--state-dir, $SMELTER_FLEET_STATE_DIR);
the stand-alone allocator refuses to start without them. Client commands send --token, --token-file,
$SMELTER_FLEET_TOKEN, else that file's token (--state-dir); --ca FILE verifies a TLS allocator, --cert/--key for mTLS.
--store defaults to $SMELTER_FLEET_STORE, else memory. Redis URLs: redis://[user:password@]host[:port][/db][?prefix=name],
rediss:// (TLS), redis+sentinel://host:port,.../master, redis+cluster://host:port,... Processes sharing a Redis
share the fleet link secret (kept in Redis, or $SMELTER_FLEET_LINK_SECRET).
Environment: SMELTER_PATH runs that Smelter binary instead of the emulator. The sidecar reads
SMELTER_FLEET_SERVER_NAME, SMELTER_FLEET_LINK, SMELTER_FLEET_LINK_TOKEN, SMELTER_FLEET_SMELTER_URL (default
http://127.0.0.1:$SMELTER_API_PORT), SMELTER_FLEET_SDK_GRPC_PORT, SMELTER_FLEET_SDK_HTTP_PORT.`;

const exampleFleet = fileURLToPath(new URL('../../../deploy/examples/local-fleet.yaml', import.meta.url));

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const out = (text: string) => process.stdout.write(text + '\n');
  const defaultStateDir = process.env.SMELTER_FLEET_STATE_DIR || undefined;
  const client = {
    defaultAllocator: process.env.SMELTER_FLEET_ALLOCATOR || '127.0.0.1:50051',
    out,
    envToken: process.env.SMELTER_FLEET_TOKEN || undefined,
    defaultStateDir,
  };
  const scaleOut = {
    defaultStore: process.env.SMELTER_FLEET_STORE || 'memory',
    linkSecret: process.env.SMELTER_FLEET_LINK_SECRET || undefined,
    out,
  };
  const stopSignal = () =>
    new Promise<string>((resolve) => {
      const onSignal = (sig: NodeJS.Signals) => {
        resolve(sig);
        // A second signal means now: let Node's default handling end the process.
        process.once(sig, () => process.exit(130));
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    });
  switch (command) {
    case 'up': {
      const stopRequested = new Promise<string>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          resolve(sig);
          // A second signal means now: let Node's default handling end the process.
          process.once(sig, () => process.exit(130));
        };
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
      });
      await up(rest, {
        defaultFleetFile: existsSync(exampleFleet) ? exampleFleet : 'fleet.yaml',
        smelterPath: process.env.SMELTER_PATH || undefined,
        out,
        tty: process.stdout.isTTY === true,
        superviseCommand: [process.execPath, fileURLToPath(import.meta.url), 'supervise'],
        stopRequested,
        defaultStore: scaleOut.defaultStore,
        linkSecret: scaleOut.linkSecret,
        defaultStateDir,
      });
      return 0;
    }
    case 'gateway':
      await gatewayCommand(rest, { ...scaleOut, stopRequested: stopSignal() });
      return 0;
    case 'allocator':
      await allocatorCommand(rest, { ...scaleOut, stopRequested: stopSignal() });
      return 0;
    case 'controller':
      await controllerCommand(rest, {
        ...scaleOut,
        stopRequested: stopSignal(),
        smelterPath: process.env.SMELTER_PATH || undefined,
        superviseCommand: [process.execPath, fileURLToPath(import.meta.url), 'supervise'],
        kubernetes: {
          inCluster: process.env.KUBERNETES_SERVICE_HOST !== undefined,
          namespace: process.env.POD_NAMESPACE || undefined,
          podName: process.env.POD_NAME || undefined,
        },
      });
      return 0;
    case 'allocate':
      await allocate(rest, client);
      return 0;
    case 'release':
      await release(rest, client);
      return 0;
    case 'get':
      await get(rest, client);
      return 0;
    case 'status':
      await status(rest, client);
      return 0;
    case 'apply':
      await apply(rest, client);
      return 0;
    case 'drain':
      await drain(rest, client);
      return 0;
    case 'events':
      await events(rest, client);
      return 0;
    case 'sidecar':
    case 'supervise':
      return sidecarCommand(command, rest, {
        env: process.env,
        onSignal: (handler) => {
          process.on('SIGTERM', () => handler('SIGTERM'));
          process.on('SIGINT', () => handler('SIGINT'));
        },
        localFleet: async () => parseFleetFile(await readFile(exampleFleet, 'utf8'), exampleFleet)[0]!,
      });
    case 'simulate':
      await simulateCommand(rest, { out });
      return 0;
    case 'emulator': {
      const { emulatorMainPath } = await import('@smelter-fleet/smelter-emulator');
      await import(emulatorMainPath);
      return -1; // keeps running
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      out(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      process.stderr.write(`smelter-fleet ${err.message}\nRun "smelter-fleet help" for usage.\n`);
      process.exitCode = 2;
    } else if (err instanceof CommandError || err instanceof FleetError) {
      process.stderr.write(`smelter-fleet ${err.message}\n`);
      process.exitCode = 1;
    } else {
      process.stderr.write(`smelter-fleet: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = 1;
    }
  },
);
