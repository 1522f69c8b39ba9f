import { isClockOffsetHigh } from '../../common/clock-offset.ts';
import type { HeartbeatResponse__Output, HostFacts, Task__Output, TrustBundle__Output, UpdateOffer__Output, UpdateStatus } from '../../common/proto.ts';
import type { AgentCredential } from '../identity/state.ts';
import type { AgentLogger } from '../log/logger.ts';
import type { HeartbeatCall, IngestTransport, RpcFailure } from '../transport/types.ts';
import type { VitalsSampler } from '../vitals/sample.ts';
import type { TaskUpdate, TaskUpdateQueue } from './task-updates.ts';
import { buildHeartbeat } from './request.ts';

/** Without an ack for this many intervals the connection is presumed dead. */
export const ACK_TIMEOUT_INTERVALS = 3;

/**
 * A stream is healthy — its end starts the reconnect schedule over — once it had this many acks
 * and lasted at least one heartbeat interval: the appliance answered a heartbeat sent on the
 * interval's timer, not only the first one at open. One ack is not enough: an appliance that acks
 * the first heartbeat and then fails (a broken database, a crash loop) would otherwise keep the
 * whole fleet on the first, shortest window forever (decisions.md 39).
 */
export const HEALTHY_STREAM_ACKS = 2;

export interface SessionEnd {
  readonly status: RpcFailure;
  /** The stream had HEALTHY_STREAM_ACKS acks and lasted one heartbeat interval: the backoff schedule starts over. */
  readonly healthy: boolean;
  /** The agent cancelled the stream because acks stopped arriving. */
  readonly ackTimedOut: boolean;
}

export interface SessionEvents {
  onFirstAck(): void;
  onCredential(jwt: string, jwtExpiresUnix: number): void;
  /** A task arrived (perhaps again); its reports go into the update queue. */
  onTask(task: Task__Output): void;
  /** An admin cancelled a task. */
  onCancel(taskId: string): void;
  /** The appliance asks this machine, kept for a cloned identity, to rotate its key with this nonce. */
  onKeyRotation(nonce: Uint8Array): void;
  /** The appliance sent the CAs to trust from now on (CA rotation); the agent verifies before anything else. */
  onTrustBundle(bundle: TrustBundle__Output): void;
  /** The appliance acknowledged heartbeats that carried these reports. */
  onDelivered(updates: readonly TaskUpdate[]): void;
  onEnd(end: SessionEnd): void;
}

/** The agent's self-update as a stream sees it (agent/update/updater.ts AgentUpdater). */
export interface SelfUpdate {
  /** The status to report, and whether it is still unacknowledged (then it rides on every heartbeat; else on a stream's first only). */
  status(): { readonly status: UpdateStatus; readonly pending: boolean } | undefined;
  /** A heartbeat carrying `status` was acknowledged. */
  delivered(status: UpdateStatus): void;
  /** An ack carried an offer. */
  offered(offer: UpdateOffer__Output): void;
  /** The stream's first heartbeat was acknowledged. */
  streaming(): Promise<void>;
}

export interface SessionDeps {
  readonly transport: IngestTransport;
  readonly credential: AgentCredential;
  readonly intervalSecs: number;
  readonly agentVersion: string;
  readonly vitals: VitalsSampler;
  readonly updates: TaskUpdateQueue;
  readonly now: () => number;
  readonly log: AgentLogger;
  readonly events: SessionEvents;
  /** A one-off report stream (report-task): the appliance does not take it for the agent being online. */
  readonly reportOnly?: boolean;
  /** The host's facts now; sent on the stream's first heartbeat and again whenever they change. */
  readonly facts?: () => HostFacts;
  /** The generation of the trust bundle held now (HeartbeatRequest.trust_generation); 0 without one. */
  readonly trustGeneration?: () => number;
  /** SHA-256 of the held bundle's payload (HeartbeatRequest.trust_digest); empty without one. */
  readonly trustDigest?: () => Uint8Array;
  /** Self-update: its status rides on the heartbeats, offers come in the acks. */
  readonly selfUpdate?: SelfUpdate;
}

/** One Heartbeat stream: sends vitals on a timer, answers what the appliance pushes. */
export class HeartbeatSession {
  private readonly deps: SessionDeps;
  private readonly call: HeartbeatCall;
  private intervalSecs: number;
  private sequence = 0;
  private acks = 0;
  /** When the stream was opened (ms, deps.now()). */
  private readonly openedAt: number;
  private readonly sentAt = new Map<number, number>();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private ackTimer: NodeJS.Timeout | undefined;
  /** Why the agent itself ended the stream, if it did; undefined while the stream runs. */
  private closedBy: 'agent' | 'ack-timeout' | undefined;
  /** The facts last sent on this stream, as JSON, to send them again only when they change. */
  private factsSent: string | undefined;
  /** The update status each unacknowledged heartbeat carried, by sequence. */
  private readonly updateCarried = new Map<number, UpdateStatus>();

  constructor(deps: SessionDeps) {
    this.deps = deps;
    this.intervalSecs = deps.intervalSecs;
    this.openedAt = deps.now();
    this.call = deps.transport.openHeartbeat(deps.credential.jwt, {
      onMessage: (message) => this.onMessage(message),
      onEnd: (status) => this.onEnd(status),
    }, { reportOnly: deps.reportOnly === true });
    // The first heartbeat goes out at once, so the host shows online without waiting an interval.
    this.sendNow();
  }

  /**
   * Uses a new interval from the next heartbeat on. A config_reload task calls this, and the
   * heartbeat that reports the task goes out at once (flush), so the new interval is announced
   * and scheduled without waiting for the old one.
   */
  useInterval(intervalSecs: number): void {
    this.intervalSecs = intervalSecs;
    if (this.closedBy === undefined) this.armAckTimer();
  }

  /** Sends a heartbeat now, carrying the task reports queued so far. */
  flush(): void {
    this.sendNow();
  }

  /** Ends the stream without reporting it as a failure (shutdown, state change). */
  close(): void {
    if (this.closedBy !== undefined) return;
    this.closedBy = 'agent';
    this.clearTimers();
    this.call.close();
  }

  private sendNow(): void {
    if (this.closedBy !== undefined) return;
    this.sequence += 1;
    const nowMs = this.deps.now();
    this.sentAt.set(this.sequence, performance.now());
    // Reported on a stream's first heartbeat (so the appliance's view is true after restarts), and on every one until acknowledged.
    const update = this.deps.selfUpdate?.status();
    const updateStatus = update !== undefined && (update.pending || this.sequence === 1) ? update.status : undefined;
    if (updateStatus !== undefined) this.updateCarried.set(this.sequence, updateStatus);
    this.call.send(
      buildHeartbeat({
        agentId: this.deps.credential.agentId,
        sequence: this.sequence,
        intervalSecs: this.intervalSecs,
        agentVersion: this.deps.agentVersion,
        nowMs,
        vitals: this.deps.vitals(),
        taskUpdates: this.deps.updates.takeFor(this.sequence),
        facts: this.changedFacts(),
        trustGeneration: this.deps.trustGeneration?.() ?? 0,
        trustDigest: this.deps.trustDigest?.() ?? new Uint8Array(0),
        updateStatus,
      }),
    );
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = setTimeout(() => this.sendNow(), this.intervalSecs * 1000);
    if (this.ackTimer === undefined) this.armAckTimer();
  }

  /** The facts when they differ from those last sent on this stream (always on its first heartbeat). */
  private changedFacts(): HostFacts | undefined {
    const facts = this.deps.facts?.();
    if (facts === undefined) return undefined;
    const json = JSON.stringify(facts);
    if (json === this.factsSent) return undefined;
    this.factsSent = json;
    return facts;
  }

  private armAckTimer(): void {
    clearTimeout(this.ackTimer);
    const timeoutMs = this.intervalSecs * ACK_TIMEOUT_INTERVALS * 1000;
    this.ackTimer = setTimeout(() => {
      this.deps.log.warn({ timeout_ms: timeoutMs }, 'no heartbeat ack; reconnecting');
      this.closedBy = 'ack-timeout';
      this.clearTimers();
      this.call.close();
    }, timeoutMs);
  }

  private onMessage(message: HeartbeatResponse__Output): void {
    if (this.closedBy !== undefined) return;
    if (message.ack) {
      const { sequence } = message.ack;
      const sentAt = this.sentAt.get(sequence);
      for (const key of [...this.sentAt.keys()]) if (key <= sequence) this.sentAt.delete(key);
      const delivered = this.deps.updates.acknowledge(sequence);
      if (delivered.length > 0) this.deps.events.onDelivered(delivered);
      for (const [carried, status] of [...this.updateCarried]) {
        if (carried > sequence) continue;
        this.updateCarried.delete(carried);
        this.deps.selfUpdate?.delivered(status);
      }
      if (message.ack.update_offer) this.deps.selfUpdate?.offered(message.ack.update_offer);
      this.deps.log.debug({ sequence, rtt_ms: sentAt === undefined ? null : Math.round(performance.now() - sentAt) }, 'heartbeat acknowledged');
      this.armAckTimer();
      this.acks += 1;
      if (this.acks === 1) {
        // Only reported: the appliance records the offset and judges everything time-bound itself.
        const offsetMs = Number(message.ack.clock_offset_ms);
        if (message.ack.clock_offset_known && isClockOffsetHigh(offsetMs)) this.deps.log.warn({ clock_offset_ms: offsetMs }, 'host clock differs from the appliance');
        this.deps.events.onFirstAck();
        void this.deps.selfUpdate?.streaming();
      }
      // More reports than one heartbeat may carry: the next batch goes out now, not an interval later.
      if (this.deps.updates.waiting > 0) this.sendNow();
    } else if (message.credential) {
      this.deps.events.onCredential(message.credential.jwt, message.credential.jwt_expires_unix);
    } else if (message.task) {
      this.deps.events.onTask(message.task);
    } else if (message.cancel) {
      this.deps.events.onCancel(message.cancel.task_id);
    } else if (message.rotate_key) {
      this.deps.events.onKeyRotation(message.rotate_key.rotation_nonce);
    } else if (message.trust) {
      this.deps.events.onTrustBundle(message.trust);
    }
  }

  private onEnd(status: RpcFailure): void {
    this.clearTimers();
    const closedBy = this.closedBy;
    if (closedBy === 'agent') return;
    this.closedBy = 'agent';
    this.deps.events.onEnd({ status, healthy: this.acks >= HEALTHY_STREAM_ACKS && this.deps.now() - this.openedAt >= this.intervalSecs * 1000, ackTimedOut: closedBy === 'ack-timeout' });
  }

  private clearTimers(): void {
    clearTimeout(this.heartbeatTimer);
    clearTimeout(this.ackTimer);
    this.heartbeatTimer = undefined;
    this.ackTimer = undefined;
  }
}
