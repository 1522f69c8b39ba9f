import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { newId } from '../../common/ids.ts';
import { failureFields } from '../health/storage-health.ts';
import { PeriodicPasses } from '../lib/periodic-passes.ts';
import type { ClusterListener } from '../store/cluster-listener.ts';
import type { Stores } from '../store/index.ts';
import { encodeSignal, parseSignal, type ClusterSignal } from './signals.ts';

/**
 * An instance's lease, in ms: taken for dead this long after its last renewal (its hosts offline,
 * their streams' rows removed by another instance's lost-stream pass). Well inside the heartbeat
 * deadline (2 × the interval, 60 s by default), so a dead instance's agents are offline within it.
 */
export const LEASE_MS = 15_000;
/**
 * The lease of a SQLite appliance: the only instance there can be (the data directory lock), alive
 * while it answers at all, so its lease is not renewed — a volume refusing writes must not turn every
 * host offline — and a crashed one's rows are forgotten at the next start (forgetOthers).
 */
const SINGLE_INSTANCE_LEASE_MS = 100 * 365 * 86_400_000;
/** How often an instance renews its lease: three chances per lease, so one slow query does not lose it. */
export const LEASE_RENEW_MS = 5_000;
/** How often each instance tries the lost-stream pass (one at a time across instances: SWEEP_LOCKS.lostStreams). */
const LOST_STREAM_SWEEP_MS = 5_000;
/** How often an instance reconciles its streams with host_streams and the hosts' states (PresenceService.reconcile). */
const RECONCILE_MS = 30_000;
/** How long (ms) a stop waits for the passes in flight (a resync over a large fleet) before it goes on. */
const STOP_WAIT_MS = 10_000;
/** How far this machine's clock may be off the database server's before it is logged (ms, once per crossing). */
const CLOCK_WARNING_MS = 60_000;
/**
 * How far before the moment signals may have started to be missed a resync looks again (ms): a
 * cancel carries the cancelling instance's time, so this covers instances' clocks up to five minutes
 * apart (and a NOTIFY sent just before the loss). Looking twice costs a repeated tell, which an agent
 * ignores; it happens only after a loss.
 */
export const RESYNC_OVERLAP_MS = 5 * 60_000;
/**
 * How long the listening connection may take to answer a query before it counts as lost: a
 * connection gone silent (no FIN, no RST) is found within LEASE_RENEW_MS + this, not at TCP's hours.
 */
const LISTENER_CHECK_MS = 5_000;

/**
 * Advisory lock keys, one per sweeper pass that must run on one instance at a time: 64-bit keys of
 * our own ('CTOPS' then the pass), like MIGRATION_LOCK_KEY, so no other application's lock collides.
 */
export const SWEEP_LOCKS = {
  lostStreams: 0x43544f50534c5354n,
  taskExpiry: 0x43544f5053544558n,
  registerNonces: 0x43544f50534e4f4en,
  auditRetention: 0x43544f5053415544n,
  taskRetention: 0x43544f5053545254n,
} as const;

/** What the signals and passes of the cluster mean to the services (wired in serve.ts). */
export interface ClusterHandlers {
  /** A signal another instance published, for a host that may stream here. */
  signal(signal: ClusterSignal): void;
  /**
   * The lost-stream pass (on one instance at a time): the stream rows of instances whose lease ran
   * out before `now` (the database server's clock) are removed and their hosts taken offline
   * (PresenceService.lostWithInstance: the bookkeeping in one transaction, then the rows).
   */
  lostStreams(now: number): Promise<void>;
  /**
   * Signals may have been missed (the listening connection was lost, or this instance's lease ran
   * out; also every RECONCILE_MS): look up again what they would have said. `missedSince` (ms, this
   * machine's clock): the earliest time a signal not yet looked up again may have been published
   * (RESYNC_OVERLAP_MS before the loss); undefined when none was missed since the last resync (SQLite
   * always: no other instance publishes).
   */
  resync(missedSince: number | undefined): Promise<void>;
}

export interface ClusterDeps {
  stores: Stores;
  log: Logger;
  /** The PostgreSQL URL to LISTEN on; undefined on SQLite (one instance: nobody to hear, no lease to renew, no lost-stream pass). */
  listenUrl: string | undefined;
  handlers: ClusterHandlers;
}

/**
 * Owns this serving instance's place among the instances on one database (decisions.md 109–111):
 * its lease (appliance_instances, renewed every LEASE_RENEW_MS), the signals it sends and hears
 * (PostgreSQL NOTIFY/LISTEN on one channel; nothing on SQLite), the lost-stream pass that takes a
 * dead instance's hosts offline, and `exclusively` for passes one instance runs at a time. The
 * services act on what it hears through ClusterHandlers.
 */
export class ClusterService {
  /** This process's instance id (ins_…), new at every start. */
  readonly instanceId = newId('ins');
  readonly #deps: ClusterDeps;
  readonly #passes: PeriodicPasses;
  /** Runs the resync now, or once more after the one running (PeriodicPasses); nothing before start. */
  #resync: () => void = () => undefined;
  #listener: ClusterListener | undefined;
  /** The database server's clock minus this machine's, in ms, measured at each renewal: leases are kept in the server's clock. */
  #clockOffsetMs = 0;
  /**
   * Since when (ms, this machine's clock) signals may have been missed and not yet looked up again:
   * set when the listening connection is lost or the lease was found run out, cleared by the first
   * resync that runs to its end while listening.
   */
  #missedSince: number | undefined;
  /** Since when (ms, this machine's clock) the listening connection is lost; undefined while listening. */
  #notListeningSince: number | undefined;

  constructor(deps: ClusterDeps) {
    this.#deps = deps;
    this.#passes = new PeriodicPasses(deps.log);
  }

  /**
   * Takes the lease and starts listening (on PostgreSQL). Rejects with ERR_STORAGE_* when the
   * database cannot take the lease or the listening connection cannot be made: an instance that
   * would not hear the others does not start.
   */
  async start(): Promise<void> {
    const { stores, log, listenUrl } = this.#deps;
    await this.#measureClock();
    this.#resync = this.#passes.every(RECONCILE_MS, 'resync with the other instances failed', () => this.#resyncPass());
    if (listenUrl === undefined) {
      await stores.instances.renewLease(this.instanceId, this.now(), SINGLE_INSTANCE_LEASE_MS);
      // A SQLite file is served by one process (the data directory lock): any other instance is this one's crashed predecessor.
      await stores.instances.forgetOthers(this.instanceId);
      log.info({ instance_id: this.instanceId }, 'serving instance registered (the only one: SQLite)');
      return;
    }
    await stores.instances.renewLease(this.instanceId, this.now(), LEASE_MS);
    // Imported here, on PostgreSQL only: pg is not loaded by an appliance on SQLite (store/postgres-dialect.ts).
    const { ClusterListener } = await import('../store/cluster-listener.ts');
    const listener = new ClusterListener(listenUrl, {
      onPayload: (payload) => this.#heard(payload),
      onListening: (first) => {
        this.#notListeningSince = undefined;
        if (first) return;
        log.info('listening for other instances again');
        this.#resync();
      },
      onLost: (error, retryInMs) => {
        this.#notListeningSince ??= Date.now();
        this.#missedSince ??= this.#notListeningSince;
        log.warn({ err: error, retry_in_ms: retryInMs }, 'the connection listening for other instances was lost');
      },
    });
    try {
      await listener.start();
    } catch (error) {
      throw new CtOpsError('ERR_STORAGE_UNAVAILABLE', 'cannot LISTEN for the other instances on the database', {}, { cause: error });
    }
    this.#listener = listener;
    this.#passes.every(LEASE_RENEW_MS, 'instance lease not renewed', () => this.#renew());
    this.#passes.every(LOST_STREAM_SWEEP_MS, 'lost-stream pass failed', () => this.exclusively(SWEEP_LOCKS.lostStreams, () => this.#deps.handlers.lostStreams(this.now())));
    log.info({ instance_id: this.instanceId, lease_ms: LEASE_MS }, 'serving instance registered');
  }

  /**
   * Whether this instance hears the other instances' signals, as /healthz reports it: undefined on
   * SQLite (there are no others); on PostgreSQL listening, or since when (ms since the epoch) its
   * listening connection is lost and being made again. Meanwhile what signals would say waits for
   * the resync (revocations close streams, cancels reach agents up to RECONCILE_MS later).
   */
  get hearing(): { readonly listening: true } | { readonly listening: false; readonly sinceMs: number } | undefined {
    if (this.#deps.listenUrl === undefined) return undefined;
    return this.#notListeningSince === undefined ? { listening: true } : { listening: false, sinceMs: this.#notListeningSince };
  }

  /** Whether no other instance is alive now: then nothing but this one can be receiving a stream. */
  async alone(): Promise<boolean> {
    return (await this.#deps.stores.instances.othersAlive(this.instanceId, this.now())) === 0;
  }

  /** Now in the database server's clock (ms since the epoch), the clock every lease is written and compared in. */
  now(): number {
    return Date.now() + this.#clockOffsetMs;
  }

  /** Stops renewing and listening and removes this instance's lease and stream rows (its hosts offline at once). */
  async stop(): Promise<void> {
    // The passes in flight end before the lease and its rows go (a resync must not claim rows after it).
    await this.#passes.stop(STOP_WAIT_MS);
    await this.#listener?.stop();
    try {
      await this.#deps.stores.instances.leave(this.instanceId);
    } catch (error) {
      this.#deps.log.error(failureFields(error), 'instance lease not removed; it expires by itself');
    }
  }

  /**
   * Tells the other instances `signal` (delivered once the NOTIFY's statement commits; call after
   * the decision's commit). Never rejects: a failure is logged, and the instance holding the host
   * makes it good at its next resync or pass (task dispatch sweep, stream reconcile).
   */
  async publish(signal: ClusterSignal): Promise<void> {
    try {
      await this.#deps.stores.instances.notify(encodeSignal(this.instanceId, signal));
    } catch (error) {
      this.#deps.log.warn({ signal: signal.kind, host_id: signal.hostId, ...failureFields(error) }, 'signal to the other instances not sent');
    }
  }

  /** Runs `work` unless another instance runs the pass of `lockKey` now (SWEEP_LOCKS; ApplianceInstanceStore.exclusively). */
  exclusively(lockKey: bigint, work: () => Promise<void>): Promise<boolean> {
    return this.#deps.stores.instances.exclusively(lockKey, work);
  }

  #heard(payload: string): void {
    const envelope = parseSignal(payload);
    if (envelope === undefined) {
      this.#deps.log.warn({ payload_bytes: Buffer.byteLength(payload) }, 'a notification on the cluster channel is not a signal; skipped');
      return;
    }
    // This instance acted on its own decisions before publishing them.
    if (envelope.from === this.instanceId) return;
    try {
      this.#deps.handlers.signal(envelope.signal);
    } catch (error) {
      this.#deps.log.error({ err: error, signal: envelope.signal.kind, host_id: envelope.signal.hostId }, 'a signal from another instance was not acted on');
    }
  }

  async #renew(): Promise<void> {
    const { stores, log } = this.#deps;
    // A listening connection that no longer answers is taken for lost: connected again, then a resync.
    this.#listener?.check(LISTENER_CHECK_MS);
    await this.#measureClock();
    if ((await stores.instances.renewLease(this.instanceId, this.now(), LEASE_MS)) === 'regained') {
      log.warn({ instance_id: this.instanceId }, 'this instance had been taken for dead (its lease ran out); its streams are claimed again');
      // Frozen or cut off for a lease at least: what it may not have heard goes back that far.
      this.#missedSince ??= Date.now() - LEASE_MS;
      this.#resync();
    }
  }

  async #measureClock(): Promise<void> {
    const before = Date.now();
    const server = await this.#deps.stores.instances.databaseTime();
    const offset = server - Math.round((before + Date.now()) / 2);
    // Leases do not care, but scans' and cancels' times are each instance's own (the quiet-scan pass, the resync's window).
    const drifted = Math.abs(offset) > CLOCK_WARNING_MS;
    if (drifted && Math.abs(this.#clockOffsetMs) <= CLOCK_WARNING_MS) this.#deps.log.warn({ offset_ms: offset }, "this machine's clock is more than a minute off the database server's; keep the instances' clocks in step (NTP)");
    this.#clockOffsetMs = offset;
  }

  async #resyncPass(): Promise<void> {
    const missedSince = this.#missedSince;
    await this.#deps.handlers.resync(missedSince === undefined ? undefined : missedSince - RESYNC_OVERLAP_MS);
    // Looked up while listening: nothing before now is missed any more. A failed resync, or one while not listening, leaves it to the next.
    if (this.#missedSince === missedSince && this.#notListeningSince === undefined) this.#missedSince = undefined;
  }
}
