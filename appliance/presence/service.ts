import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { ClusterService } from '../cluster/service.ts';
import { failureFields } from '../health/storage-health.ts';
import { mayStream } from '../hosts/status.ts';
import type { Stores } from '../store/index.ts';
import { PresenceRegistry, type Claimant, type LiveSession, type OfflineReason } from './registry.ts';

export interface PresenceDeps {
  stores: Stores;
  log: Logger;
  /** This instance's id, and telling the other instances (never rejects). */
  cluster: Pick<ClusterService, 'instanceId' | 'publish'>;
  /** The host went offline: its tasks sent but not acknowledged go back to the queue (TaskService.disconnected). */
  requeueTasks: (hostId: string) => void;
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

  constructor(deps: PresenceDeps) {
    this.#deps = deps;
    this.registry = new PresenceRegistry((hostId, reason) => void this.#wentOffline(hostId, reason));
  }

  /**
   * The claim of `session` (the host's current stream here: registry.attach) was accepted: records
   * that this instance holds the host's stream, with the machine behind it, and tells the others (an
   * older stream of the host on another instance ends as replaced; each records the claim in its
   * history, so alternating machines are seen whichever instances they reach). Only now, not at
   * attach: a stream whose claim is not judged yet must not displace one on another instance.
   * Resolves once recorded; a storage failure is logged, never thrown: the stream goes on, and the
   * host shows online once the lease is regained (ClusterService).
   */
  claimed(session: LiveSession): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    const hostId = session.agentId;
    const claimant = session.claimant;
    const recorded = (async () => {
      try {
        await this.#claims.get(hostId);
        await stores.instances.claimStream(hostId, cluster.instanceId, claimant, Date.now());
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
    return (await this.#deps.stores.instances.holderElsewhere(hostId, this.#deps.cluster.instanceId, Date.now())) ?? undefined;
  }

  /** Whether the host's stream is held here (what this instance can send to). */
  isStreaming(hostId: string): boolean {
    return this.registry.isStreaming(hostId);
  }

  /** The hosts among `hostIds` online now, on any instance. Rejects with ERR_STORAGE_* when the database fails. */
  onlineAmong(hostIds: readonly string[]): Promise<Set<string>> {
    return this.#deps.stores.instances.streamingAmong(hostIds, Date.now());
  }

  /** Whether the host is online now, on any instance. Rejects with ERR_STORAGE_* when the database fails. */
  async isOnline(hostId: string): Promise<boolean> {
    return (await this.onlineAmong([hostId])).has(hostId);
  }

  /**
   * Closes the host's stream with `error` (revoked, deleted, replaced, retired), here or on the
   * instance that holds it (signal host-closed). True when it was held here.
   */
  disconnect(hostId: string, error: CtOpsError, reason: OfflineReason): boolean {
    const here = this.registry.disconnect(hostId, error, reason);
    if (!here) void this.#deps.cluster.publish({ kind: 'host-closed', hostId, code: error.code, message: error.message });
    return here;
  }

  /** Another instance closes the host's stream (signal host-closed): closed if held here. */
  closedElsewhere(hostId: string, error: CtOpsError): void {
    this.registry.disconnect(hostId, error, 'revoked');
  }

  /**
   * Another instance holds the host's current stream now (signal stream-claimed): one here ends as
   * replaced, and the claiming agent process (when it said) joins the host's claim history here.
   */
  claimedElsewhere(hostId: string, agentInstanceId?: string): void {
    if (agentInstanceId !== undefined) this.registry.recordClaim(hostId, agentInstanceId, Date.now());
    if (this.registry.yieldStream(hostId)) this.#deps.log.info({ host_id: hostId }, 'heartbeat stream replaced by one on another instance');
  }

  /** Forgets the host's claim history (an admin resolved or dismissed its conflict, deleted or replaced it). */
  forgetClaims(hostId: string): void {
    this.registry.forgetClaims(hostId);
  }

  /**
   * The instance that held these hosts' streams died (ClusterService's lost-stream pass removed
   * their rows): each goes offline as if its stream had ended, its unacknowledged tasks queued again.
   */
  async lostWithInstance(hostIds: readonly string[]): Promise<void> {
    // One that reconnected here meanwhile is online: its new session must not be ended by a requeue.
    for (const hostId of hostIds) if (!this.registry.isStreaming(hostId)) await this.#offline(hostId, 'instance-lost');
  }

  /**
   * After this instance's lease had run out (it was taken for dead): records again that it holds
   * the streams it still has; those another instance took meanwhile end here as replaced. Then
   * closes the streams of hosts that may no longer stream (a host-closed signal may have been lost
   * while the lease or the listening connection was). Storage failures are logged.
   */
  async reconcile(): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    try {
      const held = this.registry.streamingIds();
      for (const hostId of await stores.instances.reclaimStreams(held, cluster.instanceId, Date.now())) this.claimedElsewhere(hostId);
      for (const hostId of this.registry.streamingIds()) {
        const host = await stores.hosts.get(hostId);
        if (!host || !mayStream(host)) this.registry.disconnect(hostId, new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'this host may no longer stream'), 'revoked');
      }
    } catch (error) {
      log.error(failureFields(error), 'streams not reconciled with the database');
    }
  }

  /** A stream of this instance ended: the host is offline unless another instance holds its stream now. */
  async #wentOffline(hostId: string, reason: OfflineReason): Promise<void> {
    const { stores, cluster, log } = this.#deps;
    try {
      await this.#claims.get(hostId);
      if (!(await stores.instances.releaseStream(hostId, cluster.instanceId))) {
        log.info({ host_id: hostId, reason }, 'heartbeat stream ended; the host streams to another instance');
        return;
      }
    } catch (error) {
      log.error(failureFields(error), 'stream holder not released');
    }
    await this.#offline(hostId, reason);
  }

  /**
   * The offline bookkeeping. A storage failure is logged, never thrown: the host is offline whatever
   * the database says, and the next stream's connected() queues its tasks again.
   */
  async #offline(hostId: string, reason: OfflineReason | 'instance-lost'): Promise<void> {
    const { stores, log, requeueTasks } = this.#deps;
    log.info({ host_id: hostId, reason }, 'host offline');
    try {
      await stores.hosts.recordDisconnect(hostId, Date.now());
    } catch (error) {
      log.error(failureFields(error), 'host offline not recorded');
    }
    requeueTasks(hostId);
  }
}
