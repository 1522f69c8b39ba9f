import type { Logger } from 'pino';
import type { CtOpsError } from '../../common/errors.ts';
import { failureFields } from '../health/storage-health.ts';
import type { Stores } from '../store/index.ts';
import { PresenceRegistry, type OfflineReason } from './registry.ts';

export interface PresenceDeps {
  stores: Stores;
  log: Logger;
  /** The host went offline: its tasks sent but not acknowledged go back to the queue (TaskService.disconnected). */
  requeueTasks: (hostId: string) => void;
}

/**
 * Owns whether a host is online and what its going offline implies: the in-memory registry of live
 * streams (registry.ts), and the bookkeeping when a host goes offline for any reason — the stream
 * ended, it fell silent, it was revoked or deleted, or the appliance stops: logged, its
 * last_disconnected_at recorded, its unacknowledged tasks queued again. Workflows that end a host's
 * stream call `disconnect` only after their transaction committed (tx.afterCommit), so a rolled-back
 * decision never closes a stream.
 */
export class PresenceService {
  /** The live streams; handlers attach, hear and detach their sessions on it. */
  readonly registry: PresenceRegistry;
  readonly #deps: PresenceDeps;

  constructor(deps: PresenceDeps) {
    this.#deps = deps;
    this.registry = new PresenceRegistry((hostId, reason) => void this.#wentOffline(hostId, reason));
  }

  isStreaming(hostId: string): boolean {
    return this.registry.isStreaming(hostId);
  }

  /** Closes the host's stream with `error` (revoked, deleted, replaced, retired); false when it had none. */
  disconnect(hostId: string, error: CtOpsError, reason: OfflineReason): boolean {
    return this.registry.disconnect(hostId, error, reason);
  }

  /** Forgets the host's claim history (an admin resolved or dismissed its conflict, deleted or replaced it). */
  forgetClaims(hostId: string): void {
    this.registry.forgetClaims(hostId);
  }

  /**
   * The offline bookkeeping. A storage failure is logged, never thrown: the host is offline whatever
   * the database says, and the next stream's connected() queues its tasks again.
   */
  async #wentOffline(hostId: string, reason: OfflineReason): Promise<void> {
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
