import { randomUUID } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { ClusterService } from '../cluster/service.ts';
import { failureFields } from '../health/storage-health.ts';
import { mayStream } from '../hosts/status.ts';
import type { Stores, TableStores, TransactionScope } from '../store/index.ts';
import { PresenceRegistry, type Claimant, type LiveSession, type OfflineReason } from './registry.ts';
import { settledWithin } from '../lib/settled-within.ts';

/** The most hosts one reconcile reads per query. */
const RECONCILE_BATCH = 500;
/** The most ended streams one round of offline bookkeeping records (a few statements for all of them). */
const OFFLINE_BATCH = 500;

/** A stream of this instance that ended, waiting for its host's offline bookkeeping. */
interface EndedStream {
  readonly hostId: string;
  /** Its id in the host's row, as claimed here; undefined when its claim was never recorded (refused). */
  readonly streamId: string | undefined;
  readonly reason: OfflineReason;
}

export interface PresenceDeps {
  stores: Stores;
  log: Logger;
  /** This instance's id, the clock leases are kept in, and telling the other instances (never rejects). */
  cluster: Pick<ClusterService, 'instanceId' | 'now' | 'publish'>;
  /** The hosts' streams here ended, or were lost: their tasks sent but not acknowledged go back to the queue (TaskService.disconnected). */
  requeueTasks: (hostIds: readonly string[]) => void;
}

/**
 * Owns whether a host is online and what its going offline implies: the in-memory registry of this
 * instance's live streams (registry.ts), host_streams (which instance holds each host's stream, so
 * every instance answers "online" alike: decisions.md 109), and the bookkeeping when a host goes
 * offline for any reason — the stream ended, it fell silent, it was revoked or deleted, the
 * appliance stops, or the instance holding it died: logged, its last_disconnected_at recorded, its
 * unacknowledged tasks queued again. Workflows that end a host's stream call `disconnect` only after
 * their transaction committed (tx.afterCommit), so a rolled-back decision never closes a stream.
 */
export class PresenceService {
  /** The live streams; handlers attach, hear and detach their sessions on it. */
  readonly registry: PresenceRegistry;
  readonly #deps: PresenceDeps;
  /** Each host's stream claim in flight: its release waits for it, so a stream that ends at once leaves no row behind. */
  readonly #claims = new Map<string, Promise<void>>();
  /** The stream id of each host's current stream here, as its row holds it (released by that id only). */
  readonly #streamIds = new Map<string, string>();
  /** The offline bookkeeping under way, for a stop to wait for before it leaves. */
  readonly #offlines = new Set<Promise<void>>();
  /** Streams ended here whose offline bookkeeping waits for the round under way (#wentOffline). */
  readonly #ended: EndedStream[] = [];
  /** The round of offline bookkeeping under way, recording #ended until it is empty. */
  #recording: Promise<void> | undefined;

  constructor(deps: PresenceDeps) {
    this.#deps = deps;
    this.registry = new PresenceRegistry((hostId, reason) => this.#track(this.#wentOffline(hostId, reason)));
  }

  /**
   * The claim of `session` (the host's current stream here: registry.attach) was accepted: records
   * that this instance holds the host's stream, with a new stream id and the machine behind it, and
   * tells the others (an older stream of the host on another instance ends as replaced; each records
   * the claim in its history, so alternating machines are seen whichever instances they reach).
   * Only now, not at attach: a stream whose claim is not judged yet must not displace one on another
   * instance. Resolves once recorded; a storage failure is logged, never thrown: the stream goes on,
   * and the next reconcile records it.
   */
  claimed(session: LiveSession): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    const hostId = session.agentId;
    const claimant = session.claimant;
    const streamId = randomUUID();
    this.#streamIds.set(hostId, streamId);
    const recorded = (async () => {
      try {
        await this.#claims.get(hostId);
        await stores.instances.claimStream(hostId, cluster.instanceId, streamId, claimant, cluster.now());
      } catch (error) {
        log.error({ host_id: hostId, ...failureFields(error) }, 'stream holder not recorded');
        return;
      }
      await cluster.publish({ kind: 'stream-claimed', hostId, ...(claimant && { agentInstanceId: claimant.instanceId }) });
    })();
    this.#claims.set(hostId, recorded);
    void recorded.then(() => {
      if (this.#claims.get(hostId) === recorded) this.#claims.delete(hostId);
    });
    return recorded;
  }

  /**
   * The machine behind the host's stream on another live instance: undefined when none holds it
   * or its agent said no machine. Rejects with ERR_STORAGE_* when the database fails.
   */
  async holderElsewhere(hostId: string): Promise<Claimant | undefined> {
    return (await this.#deps.stores.instances.holderElsewhere(hostId, this.#deps.cluster.instanceId, this.#deps.cluster.now())) ?? undefined;
  }

  /** Whether the host's stream is held here (what this instance can send to). */
  isStreaming(hostId: string): boolean {
    return this.registry.isStreaming(hostId);
  }

  /** The hosts among `hostIds` online now, on any instance. Rejects with ERR_STORAGE_* when the database fails. */
  onlineAmong(hostIds: readonly string[]): Promise<Set<string>> {
    return this.#deps.stores.instances.streamingAmong(hostIds, this.#deps.cluster.now());
  }

  /** Now in the clock leases are kept in (the database server's): the time "online" is judged at, by queries that judge it themselves (HostService.page). */
  leaseNow(): number {
    return this.#deps.cluster.now();
  }

  /** Whether the host is online now, on any instance. Rejects with ERR_STORAGE_* when the database fails. */
  async isOnline(hostId: string): Promise<boolean> {
    return (await this.onlineAmong([hostId])).has(hostId);
  }

  /**
   * Closes the host's stream with `error` (revoked, deleted, replaced, retired) here, and tells the
   * other instances (host-closed): the stream here may be a stale one whose agent already streams to
   * another instance. True when it was held here.
   */
  disconnect(hostId: string, error: CtOpsError, reason: OfflineReason): boolean {
    const here = this.registry.disconnect(hostId, error, reason);
    void this.#deps.cluster.publish({ kind: 'host-closed', hostId, code: error.code, message: error.message });
    return here;
  }

  /** Another instance closes the host's stream (signal host-closed): closed if held here. */
  closedElsewhere(hostId: string, error: CtOpsError): void {
    this.registry.disconnect(hostId, error, 'revoked');
  }

  /**
   * Another instance holds the host's current stream now (signal stream-claimed): the claiming agent
   * process (when it said) joins the host's claim history here, and a stream here ends as replaced —
   * once the host's row confirms another instance holds it (a late signal must not end a newer
   * stream here). What this instance sent on it and was never acknowledged goes back to the queue.
   */
  async claimedElsewhere(hostId: string, agentInstanceId?: string): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    if (agentInstanceId !== undefined) this.registry.recordClaim(hostId, agentInstanceId, Date.now());
    if (!this.registry.isStreaming(hostId)) return;
    try {
      const holder = await stores.instances.holderOf(hostId);
      if (holder === undefined || holder === cluster.instanceId) return;
    } catch (error) {
      log.error({ host_id: hostId, ...failureFields(error) }, 'stream holder not read; the stream here stays');
      return;
    }
    this.#yield(hostId);
  }

  /** Forgets the host's claim history (an admin resolved or dismissed its conflict, deleted or replaced it). */
  forgetClaims(hostId: string): void {
    this.registry.forgetClaims(hostId);
  }

  /**
   * The lost-stream pass (ClusterService, one instance at a time) for the stream rows of instances
   * whose lease ran out before `now` (the database server's clock). First, in one transaction that
   * reads those rows without locking them, their hosts' bookkeeping: last_disconnected_at recorded and
   * `alsoOffline` run for them (their sent tasks queued again, their open scans abandoned:
   * cluster/handlers.ts). Then the rows are removed in a short transaction of their own (DELETE …
   * RETURNING). So the dead instance's agents, reconnecting elsewhere, never wait for the bookkeeping
   * to claim their rows (it may wait for locks the dead instance still holds), and a pass cut off
   * between the two leaves the rows: the next pass does the bookkeeping again, which repeats no
   * effect but a later disconnect time. A host that reconnected here meanwhile is online and left
   * alone. Rejects with ERR_STORAGE_* when the storage fails.
   */
  async lostWithInstance(now: number, alsoOffline: (tx: TransactionScope<TableStores>, hostIds: readonly string[]) => Promise<void>): Promise<void> {
    const { stores, log } = this.#deps;
    const offline = await stores.transact(async (tx) => {
      const hostIds = (await tx.instances.lostHosts(now)).filter((hostId) => !this.registry.isStreaming(hostId));
      if (hostIds.length === 0) return hostIds;
      await tx.hosts.recordDisconnects(hostIds, Date.now());
      await alsoOffline(tx, hostIds);
      return hostIds;
    });
    const lost = await stores.instances.lostStreams(now);
    if (lost.length === 0) return;
    log.warn({ hosts: lost.length }, 'streams of an instance that stopped renewing its lease are lost; their hosts are offline');
    const removed = new Set(lost);
    for (const hostId of offline) if (removed.has(hostId)) log.info({ host_id: hostId, reason: 'instance-lost' }, 'host offline');
  }

  /**
   * Brings host_streams and this instance's streams back in line (periodically, and after the
   * lease or the listening connection was lost): streams here without their row are recorded again
   * (those another instance holds now end here as replaced), rows naming this instance without a
   * stream here are removed, and streams of hosts that may no longer stream are closed (a lost
   * host-closed signal). Storage failures are logged.
   *
   * In slices of RECONCILE_BATCH hosts with the event loop free between them (issue 14: at 18,000
   * streams, re-inserting every row in one pass blocked heartbeats for 0.3–2.3 s every 30 s): this
   * instance's rows are read page by page and only the streams missing from them are claimed again.
   */
  async reconcile(): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    try {
      const recorded = new Map<string, string>();
      for (let afterHostId = ''; ; await yieldToEventLoop()) {
        const page = await stores.instances.streamsOf(cluster.instanceId, { afterHostId, limit: RECONCILE_BATCH });
        for (const row of page) recorded.set(row.hostId, row.streamId);
        if (page.length < RECONCILE_BATCH) break;
        afterHostId = page.at(-1)!.hostId;
      }
      const missing = this.registry.streamingIds().filter((hostId) => !recorded.has(hostId));
      const held = missing.map((hostId) => ({ hostId, streamId: this.#streamIdOf(hostId), claimant: this.registry.claimantOf(hostId) }));
      for (const hostId of await stores.instances.reclaimStreams(held, cluster.instanceId, cluster.now())) this.#yield(hostId);
      for (const [hostId, streamId] of recorded) {
        if (!this.registry.isStreaming(hostId)) await stores.instances.releaseStream(hostId, cluster.instanceId, streamId);
      }
      const streaming = this.registry.streamingIds();
      for (let start = 0; start < streaming.length; start += RECONCILE_BATCH) {
        if (start > 0) await yieldToEventLoop();
        const batch = streaming.slice(start, start + RECONCILE_BATCH);
        const hosts = new Map((await stores.hosts.getMany(batch)).map((host) => [host.id, host]));
        for (const hostId of batch) {
          const host = hosts.get(hostId);
          if (!host || !mayStream(host)) this.registry.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host may no longer stream'), 'revoked');
        }
      }
    } catch (error) {
      log.error(failureFields(error), 'streams not reconciled with the database');
    }
  }

  /** Resolves once the offline bookkeeping under way has ended, or after `boundMs`: a stopping instance waits for it before it leaves. */
  async offlineSettled(boundMs: number): Promise<void> {
    await settledWithin(this.#offlines, boundMs);
  }

  /**
   * A stream of this instance ended: queued for the next batch of offline bookkeeping
   * (#recordEnded), which the returned promise waits for.
   */
  #wentOffline(hostId: string, reason: OfflineReason): Promise<void> {
    // Taken now: a newer stream's claim replaces it in the map.
    const streamId = this.#streamIds.get(hostId);
    if (streamId !== undefined) this.#streamIds.delete(hostId);
    this.#ended.push({ hostId, streamId, reason });
    this.#recording ??= (async () => {
      try {
        // The streams that end together (a restart of the agents' network, a storm) are recorded together.
        await yieldToEventLoop();
        while (this.#ended.length > 0) await this.#recordEnded(this.#ended.splice(0, OFFLINE_BATCH));
      } finally {
        this.#recording = undefined;
      }
    })();
    return this.#recording;
  }

  /**
   * The offline bookkeeping of streams that ended here, a batch at a time (issue 14: one statement
   * per host, 18,000 hosts whose connections dropped together blocked the event loop for 2.8 s):
   * their rows released in a few statements; a host is offline unless its row names a newer stream
   * here or another instance (a stream whose claim was refused here never holds the row). When
   * another instance holds it, what this instance sent on the ended stream and was never
   * acknowledged goes back to the queue, and that instance is told (tasks-queued).
   */
  async #recordEnded(ended: readonly EndedStream[]): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    await Promise.all(ended.map(({ hostId }) => this.#claims.get(hostId)));
    const offline: EndedStream[] = [];
    /** The first stream of `ended` not yet decided: on a storage failure it and those after it are offline. */
    let undecided = 0;
    try {
      const held = ended.filter((stream): stream is EndedStream & { streamId: string } => stream.streamId !== undefined);
      const released = await stores.instances.releaseStreams(held, cluster.instanceId);
      for (; undecided < ended.length; undecided += 1) {
        const stream = ended[undecided]!;
        // Not released (or never claimed: a refused claimant's stream): is the host held by another stream?
        const holder = released.has(stream.hostId) ? undefined : await stores.instances.holderOf(stream.hostId);
        if (holder === undefined) {
          offline.push(stream);
          continue;
        }
        log.info({ host_id: stream.hostId, reason: stream.reason }, 'heartbeat stream ended; the host streams on another stream now');
        if (stream.streamId !== undefined && holder !== cluster.instanceId) await this.#handBack(stream.hostId);
      }
    } catch (error) {
      log.error(failureFields(error), 'stream holders not released; the next reconcile removes them');
      offline.push(...ended.slice(undecided));
    }
    await this.#offline(offline);
  }

  /** A stream here is stale: another instance holds the host. It ends as replaced; what was sent on it goes back to the queue for that instance. */
  #yield(hostId: string): void {
    if (!this.registry.yieldStream(hostId)) return;
    this.#streamIds.delete(hostId);
    this.#deps.log.info({ host_id: hostId }, 'heartbeat stream replaced by one on another instance');
    this.#track(this.#handBack(hostId));
  }

  /** What this instance sent on its stale stream and was never acknowledged goes back to the queue, and the instance holding the host is told. */
  async #handBack(hostId: string): Promise<void> {
    this.#deps.requeueTasks([hostId]);
    await this.#deps.cluster.publish({ kind: 'tasks-queued', hostId });
  }

  #streamIdOf(hostId: string): string {
    let streamId = this.#streamIds.get(hostId);
    if (streamId === undefined) this.#streamIds.set(hostId, (streamId = randomUUID()));
    return streamId;
  }

  #track(work: Promise<void>): void {
    this.#offlines.add(work);
    void work.finally(() => this.#offlines.delete(work));
  }

  /**
   * The offline bookkeeping of `ended`'s hosts: logged, their disconnect time recorded (one
   * statement for the batch), their sent tasks queued again. A storage failure is logged, never
   * thrown: the hosts are offline whatever the database says, and the next stream's connected()
   * queues their tasks again.
   */
  async #offline(ended: readonly EndedStream[]): Promise<void> {
    if (ended.length === 0) return;
    const { stores, log, requeueTasks } = this.#deps;
    for (const { hostId, reason } of ended) log.info({ host_id: hostId, reason }, 'host offline');
    try {
      await stores.hosts.recordDisconnects(ended.map(({ hostId }) => hostId), Date.now());
    } catch (error) {
      log.error(failureFields(error), 'host offline not recorded');
    }
    requeueTasks(ended.map(({ hostId }) => hostId));
  }
}
