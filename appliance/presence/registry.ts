import type { CtOpsError } from '../../common/errors.ts';
import type { HeartbeatResponse } from '../../common/proto.ts';
import type { Claimant } from '../model/host.ts';

export type { Claimant } from '../model/host.ts';

/** One agent's live Heartbeat stream, as the registry sees it. */
export interface LiveSession {
  readonly agentId: string;
  /**
   * Writes a message to the agent: true once the stream accepted it (grpc/stream-writer.ts),
   * false when it was not sent (the stream is not streaming, or ended before the write was accepted).
   */
  send(message: HeartbeatResponse): Promise<boolean>;
  /** Ends the stream, `reason` saying why: with an error the agent receives that status, without one OK. */
  close(error?: CtOpsError, reason?: CloseReason): void;
  /** The machine behind the stream, once its first heartbeat said (undefined for agents that send no HostFacts). */
  claimant?: Claimant | undefined;
}

/** How long a host's stream opens are remembered for telling a restart from two alternating machines. */
export const CLAIM_HISTORY_MS = 10 * 60_000;
/** The most stream opens remembered per host. */
const CLAIM_HISTORY_LENGTH = 8;

interface ClaimRecord {
  instanceId: string;
  at: number;
}

export type OfflineReason = 'stream-closed' | 'heartbeat-timeout' | 'revoked' | 'appliance-stopping';
/** Why presence closes a stream: its host went offline for that reason, or a newer stream replaced it. */
export type CloseReason = OfflineReason | 'replaced';

interface Entry {
  session: LiveSession;
  deadline: NodeJS.Timeout;
  deadlineMs: number;
}

/**
 * Which agents are online, in memory: a host is online while it holds the current
 * stream and has been heard within twice its heartbeat interval. One timer per
 * stream replaces any polling of the database; a newer stream for the same agent
 * replaces the older one without the host ever being reported offline.
 */
export class PresenceRegistry {
  readonly #live = new Map<string, Entry>();
  /** Recent claiming instances per host, oldest first: in memory, as presence itself is. */
  readonly #claims = new Map<string, ClaimRecord[]>();
  readonly #onOffline: (agentId: string, reason: OfflineReason) => void;

  constructor(onOffline: (agentId: string, reason: OfflineReason) => void) {
    this.#onOffline = onOffline;
  }

  /** Makes `session` the agent's current stream, closing any older one silently. */
  attach(session: LiveSession, intervalSecs: number): void {
    const previous = this.#live.get(session.agentId);
    if (previous) {
      clearTimeout(previous.deadline);
      this.#live.delete(session.agentId);
      previous.session.close(undefined, 'replaced');
    }
    const deadlineMs = 2 * intervalSecs * 1000;
    this.#live.set(session.agentId, { session, deadlineMs, deadline: this.#startDeadline(session, deadlineMs) });
  }

  /** Records that `session` was heard from; the host stays online for 2 × intervalSecs more. */
  heard(session: LiveSession, intervalSecs: number): void {
    const entry = this.#current(session);
    if (!entry) return;
    const deadlineMs = 2 * intervalSecs * 1000;
    if (deadlineMs === entry.deadlineMs) {
      entry.deadline.refresh();
    } else {
      clearTimeout(entry.deadline);
      entry.deadlineMs = deadlineMs;
      entry.deadline = this.#startDeadline(session, deadlineMs);
    }
  }

  /** The stream ended; the host goes offline unless a newer stream has replaced this one. */
  detach(session: LiveSession, reason: OfflineReason): void {
    const entry = this.#current(session);
    if (!entry) return;
    clearTimeout(entry.deadline);
    this.#live.delete(session.agentId);
    this.#onOffline(session.agentId, reason);
  }

  isStreaming(agentId: string): boolean {
    return this.#live.has(agentId);
  }

  /** The machine behind the agent's current stream, if it said. */
  claimantOf(agentId: string): Claimant | undefined {
    return this.#live.get(agentId)?.session.claimant;
  }

  /**
   * Records that `instanceId` claimed the agent's identity at `now` (ms) and answers whether this
   * makes two machines alternating: the instance claimed it before, and another one since, within
   * CLAIM_HISTORY_MS (A → B → A). A restart is a new instance that the old one never follows.
   */
  recordClaim(agentId: string, instanceId: string, now: number): boolean {
    const history = (this.#claims.get(agentId) ?? []).filter((claim) => now - claim.at <= CLAIM_HISTORY_MS);
    const last = history.at(-1);
    const alternated = last !== undefined && last.instanceId !== instanceId && history.some((claim) => claim.instanceId === instanceId);
    if (last?.instanceId === instanceId) last.at = now;
    else history.push({ instanceId, at: now });
    this.#claims.set(agentId, history.slice(-CLAIM_HISTORY_LENGTH));
    return alternated;
  }

  /** Forgets the host's claim history: an admin resolved or dismissed its conflict, deleted it, or replaced it. */
  forgetClaims(agentId: string): void {
    this.#claims.delete(agentId);
  }

  /** The agents with a live stream now. */
  streamingIds(): string[] {
    return [...this.#live.keys()];
  }

  get size(): number {
    return this.#live.size;
  }

  /** Sends to the agent's current stream: true once accepted; false when it has none or the write was not accepted. */
  send(agentId: string, message: HeartbeatResponse): Promise<boolean> {
    return this.#live.get(agentId)?.session.send(message) ?? Promise.resolve(false);
  }

  /** Closes the agent's stream with `error` (e.g. on revocation); false when it had none. */
  disconnect(agentId: string, error: CtOpsError, reason: OfflineReason): boolean {
    const entry = this.#live.get(agentId);
    if (!entry) return false;
    this.detach(entry.session, reason);
    entry.session.close(error, reason);
    return true;
  }

  /**
   * Another instance holds the agent's current stream now (cluster signal stream-claimed): the one
   * here is older and ends as replaced, without the host going offline. False when there was none.
   */
  yieldStream(agentId: string): boolean {
    const entry = this.#live.get(agentId);
    if (!entry) return false;
    clearTimeout(entry.deadline);
    this.#live.delete(agentId);
    entry.session.close(undefined, 'replaced');
    return true;
  }

  /** Closes every stream, e.g. when the appliance stops, with `error` or the one `error()` gives each (a retry hint drawn per stream). */
  closeAll(error: CtOpsError | (() => CtOpsError)): void {
    for (const entry of [...this.#live.values()]) {
      this.detach(entry.session, 'appliance-stopping');
      entry.session.close(typeof error === 'function' ? error() : error, 'appliance-stopping');
    }
  }

  #current(session: LiveSession): Entry | undefined {
    const entry = this.#live.get(session.agentId);
    return entry?.session === session ? entry : undefined;
  }

  #startDeadline(session: LiveSession, deadlineMs: number): NodeJS.Timeout {
    return setTimeout(() => {
      // Silence for twice the interval: the connection may be half-open, so drop it.
      this.detach(session, 'heartbeat-timeout');
      session.close(undefined, 'heartbeat-timeout');
    }, deadlineMs);
  }
}
