import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import { newSuffix, silentLogger, systemClock, type Clock, type Logger } from '@smelter-fleet/core';
import { KubeHttpError, kubeRequest } from './informer.js';

export interface LeaderElectorOptions {
  kubeConfig: KubeConfig;
  namespace: string;
  /** Name of the coordination.k8s.io/v1 Lease the candidates share. */
  leaseName: string;
  /** This candidate's holderIdentity. Default `<hostname>_<pid>_<random>`. */
  identity?: string;
  /** How long a lease holds without renewal before another candidate may take it, ms (whole seconds). Default 15000. */
  leaseDurationMs?: number;
  /** The leader steps down when it could not renew for this long, ms. Less than leaseDurationMs. Default 10000. */
  renewDeadlineMs?: number;
  /** Pause between two attempts to acquire or renew, ms. Default 2000. */
  retryPeriodMs?: number;
  /** On stop, hand the lease back (holder emptied) so the next leader need not wait it out. Default true. */
  releaseOnStop?: boolean;
  /** Called whenever the holder seen on the lease changes (this candidate included). */
  onNewLeader?: (identity: string) => void;
  logger?: Logger;
  clock?: Clock;
}

interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string };
  spec?: LeaseSpec;
}

/** RFC 3339 with microseconds, the MicroTime format the Lease fields take. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/**
 * Leader election on a coordination.k8s.io Lease, as client-go's leaderelection: every candidate tries to acquire or
 * renew every retryPeriod with a compare-and-swap (the resourceVersion it read); a lease whose record has not changed
 * for its leaseDuration (timed by this candidate's own clock, so clock skew does not matter) may be taken over. The
 * leader that cannot renew within renewDeadline steps down at once, before its lease can expire for the others.
 */
export class LeaderElector {
  readonly identity: string;
  private readonly kc: KubeConfig;
  private readonly path: string;
  private readonly leaseName: string;
  private readonly namespace: string;
  private readonly leaseDurationMs: number;
  private readonly renewDeadlineMs: number;
  private readonly retryPeriodMs: number;
  private readonly releaseOnStop: boolean;
  private readonly onNewLeader: ((identity: string) => void) | undefined;
  private readonly logger: Logger;
  private readonly clock: Clock;
  private observedRecord = '';
  private observedTime = 0;
  private observedHolder = '';
  private lastLease: Lease | undefined;
  private leading = false;

  constructor(options: LeaderElectorOptions) {
    this.kc = options.kubeConfig;
    this.namespace = options.namespace;
    this.leaseName = options.leaseName;
    this.path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(options.namespace)}/leases`;
    this.identity = options.identity ?? `${hostname()}_${process.pid}_${newSuffix()}`;
    this.leaseDurationMs = options.leaseDurationMs ?? 15_000;
    this.renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.retryPeriodMs = options.retryPeriodMs ?? 2_000;
    if (this.leaseDurationMs < 1000) throw new Error('leaseDurationMs must be at least 1000');
    if (this.renewDeadlineMs >= this.leaseDurationMs)
      throw new Error('renewDeadlineMs must be less than leaseDurationMs');
    if (this.retryPeriodMs >= this.renewDeadlineMs) throw new Error('retryPeriodMs must be less than renewDeadlineMs');
    this.releaseOnStop = options.releaseOnStop ?? true;
    this.onNewLeader = options.onNewLeader;
    this.logger = (options.logger ?? silentLogger).child({ lease: `${options.namespace}/${options.leaseName}` });
    this.clock = options.clock ?? systemClock;
  }

  /** Whether this candidate holds the lease right now. */
  isLeader(): boolean {
    return this.leading;
  }

  /**
   * Campaigns until `signal` aborts. Each time it acquires the lease it runs `lead` with a signal that aborts the
   * moment leadership is lost (or `signal` aborts); once `lead` has returned it campaigns again. On abort it waits
   * for `lead` to return, then releases the lease.
   */
  async run(signal: AbortSignal, lead: (leading: AbortSignal) => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      await this.acquire(signal);
      if (signal.aborted) break;
      this.leading = true;
      this.logger.info('became leader', { identity: this.identity });
      const leadership = new AbortController();
      const stopLeading = () => leadership.abort(new Error('leadership ended'));
      signal.addEventListener('abort', stopLeading, { once: true });
      const renewing = this.renew(leadership);
      let ended = false;
      try {
        await lead(leadership.signal);
        ended = !leadership.signal.aborted;
      } catch (err) {
        ended = !leadership.signal.aborted;
        this.logger.error('leader work failed', { error: String(err) });
      } finally {
        stopLeading();
        signal.removeEventListener('abort', stopLeading);
        await renewing;
        this.leading = false;
      }
      if (signal.aborted) {
        await this.release();
      } else if (ended) {
        // The work stopped by itself (it failed): let another candidate try, and do not spin.
        this.logger.warn('leader work ended; stepping down', { identity: this.identity });
        await this.release();
        await this.clock.sleep(this.retryPeriodMs, signal).catch(() => undefined);
      } else this.logger.warn('leadership lost', { identity: this.identity });
    }
  }

  /** Retries every retryPeriod until this candidate holds the lease or `signal` aborts. */
  private async acquire(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (await this.tryAcquireOrRenew(AbortSignal.any([signal, AbortSignal.timeout(this.retryPeriodMs)]))) return;
      await this.clock.sleep(this.retryPeriodMs, signal).catch(() => undefined);
    }
  }

  /** Renews every retryPeriod; aborts `leadership` when a renewal has not succeeded for renewDeadline. */
  private async renew(leadership: AbortController): Promise<void> {
    const signal = leadership.signal;
    let renewedAt = this.clock.now();
    const lose = (why: string) => {
      if (signal.aborted) return;
      this.logger.warn('stepping down', { why });
      leadership.abort(new Error(`leadership lost: ${why}`));
    };
    // Steps down on time even while a renewal request hangs.
    let deadline = setTimeout(() => lose('renew deadline passed'), this.renewDeadlineMs);
    try {
      while (!signal.aborted) {
        await this.clock.sleep(this.retryPeriodMs, signal).catch(() => undefined);
        if (signal.aborted) break;
        const left = renewedAt + this.renewDeadlineMs - this.clock.now();
        const ok = await this.tryAcquireOrRenew(
          AbortSignal.any([signal, AbortSignal.timeout(Math.max(1, Math.min(left, this.retryPeriodMs)))]),
        );
        if (ok) {
          renewedAt = this.clock.now();
          clearTimeout(deadline);
          deadline = setTimeout(() => lose('renew deadline passed'), this.renewDeadlineMs);
        } else if (this.observedHolder !== this.identity && this.observedHolder !== '') {
          lose(`lease taken by ${this.observedHolder}`);
        }
      }
    } finally {
      clearTimeout(deadline);
    }
  }

  /** One compare-and-swap attempt; true when this candidate holds the lease afterwards. Never throws. */
  private async tryAcquireOrRenew(signal: AbortSignal): Promise<boolean> {
    const now = this.clock.now();
    const durationSeconds = Math.ceil(this.leaseDurationMs / 1000);
    try {
      let lease: Lease;
      try {
        lease = await kubeRequest<Lease>(this.kc, 'GET', `${this.path}/${encodeURIComponent(this.leaseName)}`, {
          signal,
          pool: 'lease',
        });
      } catch (err) {
        if (!(err instanceof KubeHttpError && err.statusCode === 404)) throw err;
        const created = await kubeRequest<Lease>(this.kc, 'POST', this.path, {
          signal,
          pool: 'lease',
          body: {
            apiVersion: 'coordination.k8s.io/v1',
            kind: 'Lease',
            metadata: { name: this.leaseName, namespace: this.namespace },
            spec: {
              holderIdentity: this.identity,
              leaseDurationSeconds: durationSeconds,
              acquireTime: microTime(now),
              renewTime: microTime(now),
              leaseTransitions: 0,
            },
          },
        });
        this.observe(created, now);
        return true;
      }
      this.observe(lease, now);
      const spec = lease.spec ?? {};
      const holder = spec.holderIdentity ?? '';
      const heldForMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
      if (holder !== '' && holder !== this.identity && this.observedTime + heldForMs > now) return false;
      const mine = holder === this.identity;
      const next: Lease = {
        ...lease,
        spec: {
          ...spec,
          holderIdentity: this.identity,
          leaseDurationSeconds: durationSeconds,
          renewTime: microTime(now),
          acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
          leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + (holder ? 1 : 0),
        },
      };
      // The resourceVersion read above makes this a compare-and-swap: 409 Conflict if anyone wrote in between.
      const written = await kubeRequest<Lease>(this.kc, 'PUT', `${this.path}/${encodeURIComponent(this.leaseName)}`, {
        signal,
        pool: 'lease',
        body: next,
      });
      this.observe(written, now);
      if (!mine) this.logger.info('lease acquired', { previousHolder: holder || '(none)' });
      return true;
    } catch (err) {
      const status = err instanceof KubeHttpError ? err.statusCode : undefined;
      if (status !== 409) this.logger.debug('lease attempt failed', { error: String((err as Error).message ?? err) });
      return false;
    }
  }

  private observe(lease: Lease, now: number): void {
    this.lastLease = lease;
    const record = JSON.stringify(lease.spec ?? {});
    if (record !== this.observedRecord) {
      this.observedRecord = record;
      this.observedTime = now;
    }
    const holder = lease.spec?.holderIdentity ?? '';
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder) this.onNewLeader?.(holder);
    }
  }

  /** Hands the lease back if this candidate still holds it (best effort, bounded by retryPeriod). */
  private async release(): Promise<void> {
    if (!this.releaseOnStop || !this.lastLease || this.observedHolder !== this.identity) return;
    const now = this.clock.now();
    try {
      const released = await kubeRequest<Lease>(this.kc, 'PUT', `${this.path}/${encodeURIComponent(this.leaseName)}`, {
        signal: AbortSignal.timeout(this.retryPeriodMs),
        pool: 'lease',
        body: {
          ...this.lastLease,
          spec: {
            leaseDurationSeconds: 1,
            acquireTime: microTime(now),
            renewTime: microTime(now),
            leaseTransitions: this.lastLease.spec?.leaseTransitions ?? 0,
          },
        },
      });
      this.observe(released, now);
      this.logger.info('lease released', { identity: this.identity });
    } catch (err) {
      this.logger.warn('cannot release the lease', { error: String((err as Error).message ?? err) });
    }
  }
}
