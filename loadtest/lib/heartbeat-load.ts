import { setImmediate, setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { ACK_TIMEOUT_INTERVALS, HEALTHY_STREAM_ACKS } from '../../agent/heartbeat/session.ts';
import { Backoff } from '../../agent/lifecycle/backoff.ts';
import type { HeartbeatRequest, HeartbeatResponse__Output, IngestServiceClient, Task__Output, TaskUpdate } from '../../common/proto.ts';
import { connect, connectOnce } from './clients.ts';
import { ErrorTally } from './error-tally.ts';
import type { InventoryLoad } from './inventory-load.ts';
import type { ActiveAgent } from './register-load.ts';
import { LatencyHistogram } from './stats.ts';

export interface HeartbeatLoadOptions {
  intervalMs: number;
  durationMs: number;
  /** TLS handshakes in flight while connecting, so connecting does not starve the appliance. */
  connectConcurrency: number;
  /** How long to wait after the last heartbeat for acks still in flight. */
  drainMs: number;
  /** Agents whose Heartbeat streams share one connection (default 1: a connection each, as real agents have). */
  agentsPerConnection?: number;
  /**
   * Each connection's client, already connected, instead of a new one: a registration storm's agents
   * stream on the connection they registered on, as a real agent does (one agent per connection).
   */
  registeredClients?: readonly IngestServiceClient[];
  /** Keep every RTT in arrival order in result.rttMs (default true); without, only the histogram counts them, in bounded memory. */
  keepRttSamples?: boolean;
  /**
   * Drops every connection this long (ms) into the run; each comes back after the wait a real agent
   * draws when a healthy stream ends (agent/lifecycle/backoff.ts), retrying on its schedule.
   */
  reconnectAfterMs?: number;
  /**
   * Rides out failures as the real agent does: a stream that ends with an error, or gets no ack for
   * ACK_TIMEOUT_INTERVALS intervals, is reconnected after the agent's backoff (agent/lifecycle/backoff.ts,
   * started over after a healthy stream as the agent's HEALTHY_STREAM_ACKS rule says), each attempt
   * failing as fast as the agent's call does. Without, a failed stream is an error and its agent stays offline.
   */
  reconnectAfterFailure?: boolean;
  /** Answers the appliance's software inventory tasks with scans; without, those tasks are only acknowledged (the appliance times them out). */
  inventory?: InventoryLoad;
}

/** A task the appliance pushed, in ms since the epoch (comparable across the generator's processes). */
export interface TaskRoundTrip {
  taskId: string;
  receivedAtMs: number;
  /** When the heartbeat reporting it acknowledged and succeeded was acked; absent when it never was. */
  answeredAtMs?: number;
}

export interface HeartbeatLoadResult {
  sent: number;
  acked: number;
  /** Heartbeats still without an ack when the drain ended (those cut off by a deliberate drop are in reconnect.droppedInFlight). */
  lost: number;
  /** Example messages (the first 100); errorCount and errorsByKind count them all. */
  errors: string[];
  errorCount: number;
  errorsByKind: Record<string, number>;
  /** Every RTT in ms, in arrival order; empty when keepRttSamples is false. */
  rttMs: number[];
  rtt: LatencyHistogram;
  /** Agents streaming, with at least one ack on their current stream, when the heartbeats stopped. */
  online: number;
  tasks: TaskRoundTrip[];
  reconnect: {
    /** Heartbeats sent but not yet acked when their connection was dropped. */
    droppedInFlight: number;
    /** Per agent: from the drop to the first ack on its new stream. */
    backMs: LatencyHistogram;
    /**
     * Attempts the appliance refused at once (reset or closed before TLS completed: its admission
     * control, appliance/grpc/connection-gate.ts), after which the agent backed off as designed; an
     * attempt that timed out is an error instead.
     */
    attemptsRefused: number;
  };
  /** With reconnectAfterFailure: the streams that failed on their own (the appliance killed, unreachable) and how the agents came back. */
  outage: OutageResult;
}

export interface OutageResult {
  /** Streams that ended with a transport failure (UNAVAILABLE, DEADLINE_EXCEEDED) or an ack timeout. */
  streamsFailed: number;
  /** Heartbeats sent but not acked when their stream failed (not counted lost). */
  cutInFlight: number;
  /** Connection attempts after a failure, and those that failed (each followed by the next backoff wait). */
  attempts: number;
  attemptsFailed: number;
  /**
   * When each attempt that connected began, ms since the epoch: the arrivals at the appliance as the
   * agents' backoff spread them (the acks' times also show how fast the appliance served them).
   */
  arrivalAtMs: number[];
  /** Per outage of an agent: from its stream failing to the first ack on a new stream. */
  backMs: LatencyHistogram;
  /** When each of those first acks came, ms since the epoch (comparable across processes and with the caller's clock). */
  backAtMs: number[];
  /** When the first stream failed, ms since the epoch (null: none did). */
  firstFailedAtMs: number | null;
  /** Agents still out (their stream failed and no new one acked) when the heartbeats stopped. */
  stillOut: number;
}

/** gRPC outcomes of a stream that mean the appliance went away (killed, restarting, unreachable), not that it refused the agent. */
const TRANSPORT_FAILURES: ReadonlySet<grpc.status> = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED]);

/** Connections the reconnect storm drops in one turn of the event loop (#reconnectAll). */
const DROPS_PER_TURN = 200;
/** How long one reconnect attempt may take before the agent's next wait (the agent's Heartbeat call deadline is of this order). */
const RECONNECT_TIMEOUT_MS = 20_000;

/** Wall-clock ms with sub-ms precision: task times are compared with the admin API's, taken in another process. */
const epochMs = (): number => performance.timeOrigin + performance.now();

/**
 * Where an agent's stream stands: `dropped` while its connection comes back after a deliberate drop,
 * `out` while it comes back after a failure (reconnectAfterFailure), `failed` when it stays offline.
 */
type StreamState = 'closed' | 'streaming' | 'dropped' | 'out' | 'failed';

/** Called when an agent's stream failed and its connection should come back: `healthy` as the agent's rule says. */
type OnStreamFailed = (healthy: boolean) => void;

/** One agent: heartbeats on a timer over its connection's Heartbeat stream, timing each until its ack. */
class SimulatedAgent {
  readonly #agent: ActiveAgent;
  readonly #result: HeartbeatLoadResult;
  readonly #tally: ErrorTally;
  readonly #keepSamples: boolean;
  readonly #inventory: InventoryLoad | undefined;
  readonly #sentAt = new Map<number, number>();
  /** Tasks reported on the heartbeat with this sequence, answered when its ack comes. */
  readonly #reports = new Map<number, TaskRoundTrip[]>();
  #state: StreamState = 'closed';
  #client: IngestServiceClient | undefined;
  #call: grpc.ClientDuplexStream<HeartbeatRequest, HeartbeatResponse__Output> | undefined;
  #ended: Promise<void> = Promise.resolve();
  #droppedAt: number | undefined;
  /** performance.now() when the stream failed, until the first ack on a new one. */
  #outSince: number | undefined;
  #openedAt = 0;
  #acksOnStream = 0;
  #onFailed: OnStreamFailed | undefined;
  #sequence = 0;
  /** Heartbeats counted but not timed: each first stream's opening one (open). */
  readonly #untimed = new Set<number>();
  #intervalMs = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(agent: ActiveAgent, result: HeartbeatLoadResult, tally: ErrorTally, options: Pick<HeartbeatLoadOptions, 'keepRttSamples' | 'inventory' | 'intervalMs'>) {
    this.#agent = agent;
    this.#intervalMs = options.intervalMs;
    this.#result = result;
    this.#tally = tally;
    this.#keepSamples = options.keepRttSamples ?? true;
    this.#inventory = options.inventory;
  }

  get inFlight(): number {
    return this.#sentAt.size;
  }

  get online(): boolean {
    return this.#state === 'streaming' && this.#acksOnStream > 0;
  }

  /** Its stream failed and no new one has been acked yet. */
  get out(): boolean {
    return this.#outSince !== undefined;
  }

  /** With reconnectAfterFailure: a failed stream calls `onFailed` (the connection comes back) instead of leaving the agent offline. */
  recoverWith(onFailed: OnStreamFailed): void {
    this.#onFailed = onFailed;
  }

  open(client: IngestServiceClient): void {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.#agent.jwt}`);
    const call = client.Heartbeat(metadata);
    call.on('data', (message: HeartbeatResponse__Output) => this.#onMessage(message));
    call.on('error', () => undefined);
    this.#ended = new Promise((resolve) => {
      call.on('status', (status: grpc.StatusObject) => {
        // A stream ended by our own drop or close (or replaced since) is no failure.
        if (this.#call === call && this.#state === 'streaming') {
          const transportFailure = TRANSPORT_FAILURES.has(status.code);
          // OK while the agent still streams: the appliance ended the stream (a heartbeat deadline ends
          // one with OK), which the agent never asked for: an error, never a quiet close.
          const kind = status.code === grpc.status.OK ? 'ended-by-appliance' : grpc.status[status.code];
          // Riding out failures, an appliance that went away is what is measured (result.outage), not an error.
          if (!(this.#onFailed && transportFailure)) this.#tally.add(`heartbeat:${kind}`, `${this.#agent.agentId}: stream ended ${kind} ${status.details}`);
          if (this.#onFailed) this.fail();
          else this.#state = 'failed';
        }
        resolve();
      });
    });
    this.#client = client;
    this.#call = call;
    this.#acksOnStream = 0;
    this.#openedAt = performance.now();
    this.#state = 'streaming';
    // The agent's first heartbeat goes out as its stream opens (the appliance ends a stream silent for
    // two intervals). Back after a drop or failure it is timed: its ack is the agent's return. The first
    // stream's is not: it goes out while the fleet is still connecting, and the run times the heartbeat
    // phase (the spread timers of start()).
    const returning = this.#droppedAt !== undefined || this.#outSince !== undefined;
    this.#beat([], returning);
    // Until the heartbeat phase starts its timer (start), the first stream beats untimed on its interval
    // as the agent would: a fleet that takes longer than two intervals to connect (10,000 agents at a
    // 10 s interval) would otherwise see its first streams ended as silent before the phase began.
    if (!returning && this.#timer === undefined) this.#timer = setInterval(() => this.#beat([], false), this.#intervalMs);
  }

  /** First heartbeat after offsetMs, then one every intervalMs: agents spread over the interval. */
  start(offsetMs: number, intervalMs: number): void {
    clearInterval(this.#timer);
    this.#intervalMs = intervalMs;
    this.#timer = setTimeout(() => {
      this.#beat();
      this.#timer = setInterval(() => this.#beat(), intervalMs);
    }, offsetMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  /** Cuts the stream off (its connection is being dropped): heartbeats in flight are counted apart, not as lost. */
  drop(): void {
    this.#result.reconnect.droppedInFlight += this.#sentAt.size;
    this.#sentAt.clear();
    this.#untimed.clear();
    this.#reports.clear();
    this.#state = 'dropped';
    this.#droppedAt = performance.now();
    this.#call?.cancel();
  }

  /**
   * The stream failed (it ended with an error, or acks stopped): its heartbeats in flight are counted
   * apart, and the connection is asked to come back. Idempotent while the agent is out.
   */
  fail(): void {
    if (this.#state !== 'streaming') return;
    const outage = this.#result.outage;
    const now = performance.now();
    outage.streamsFailed += 1;
    outage.cutInFlight += this.#sentAt.size;
    outage.firstFailedAtMs ??= epochMs();
    this.#sentAt.clear();
    this.#untimed.clear();
    this.#reports.clear();
    this.#state = 'out';
    this.#outSince ??= now;
    const healthy = this.#acksOnStream >= HEALTHY_STREAM_ACKS && now - this.#openedAt >= this.#intervalMs;
    this.#call?.cancel();
    this.#onFailed?.(healthy);
  }

  /** Half-closes the stream and waits (bounded) for the appliance to end it. */
  async close(timeoutMs: number): Promise<void> {
    this.stop();
    if (this.#state === 'streaming') this.#call?.end();
    this.#state = 'closed';
    await Promise.race([this.#ended, sleep(timeoutMs)]);
  }

  #beat(updates: TaskUpdate[] = [], timed = true): number | undefined {
    if (this.#state !== 'streaming' || !this.#call) return undefined;
    if (this.#onFailed && this.#ackOverdue()) {
      this.fail();
      return undefined;
    }
    const sequence = ++this.#sequence;
    this.#sentAt.set(sequence, performance.now());
    if (!timed) this.#untimed.add(sequence);
    this.#result.sent += 1;
    this.#call.write({
      agent_id: this.#agent.agentId,
      cpu_percent: 20,
      memory_percent: 40,
      disk_percent: 60,
      uptime_seconds: 3600 + sequence,
      timestamp_unix: Math.floor(Date.now() / 1000),
      sequence,
      interval_secs: Math.max(1, Math.round(this.#intervalMs / 1000)),
      agent_version: '0.1.0-load',
      task_updates: updates,
    });
    return sequence;
  }

  /** The agent's ack timeout: a heartbeat unanswered for ACK_TIMEOUT_INTERVALS intervals means the connection is dead (half-open). */
  #ackOverdue(): boolean {
    const oldest = this.#sentAt.values().next();
    return !oldest.done && performance.now() - oldest.value >= ACK_TIMEOUT_INTERVALS * this.#intervalMs;
  }

  #onMessage(message: HeartbeatResponse__Output): void {
    if (message.kind === 'credential') this.#agent.jwt = message.credential!.jwt;
    else if (message.kind === 'task') this.#answerTask(message.task!);
    else if (message.kind === 'ack') this.#onAck(Number(message.ack!.sequence));
  }

  /**
   * Answers a task at once, as the agent flushes its reports: acknowledged and succeeded on one
   * heartbeat; an inventory task is acknowledged, then succeeds once its scan was taken.
   */
  #answerTask(task: Task__Output): void {
    const roundTrip: TaskRoundTrip = { taskId: task.task_id, receivedAtMs: epochMs() };
    this.#result.tasks.push(roundTrip);
    const acknowledged: TaskUpdate = { task_id: task.task_id, phase: 'TASK_PHASE_ACKNOWLEDGED' };
    const succeeded: TaskUpdate = { task_id: task.task_id, phase: 'TASK_PHASE_SUCCEEDED', result_json: '{}' };
    if (task.kind !== 'software_inventory') return this.#report(roundTrip, [acknowledged, succeeded]);
    this.#beat([acknowledged]);
    const client = this.#client;
    if (this.#inventory && client) void this.#inventory.submit(client, this.#agent, task.task_id).then((taken) => taken && this.#report(roundTrip, [succeeded]));
  }

  /** Sends `updates` on a heartbeat now; `task` is answered when that heartbeat is acked. */
  #report(task: TaskRoundTrip, updates: TaskUpdate[]): void {
    const sequence = this.#beat(updates);
    if (sequence !== undefined) this.#reports.set(sequence, [...(this.#reports.get(sequence) ?? []), task]);
  }

  #onAck(sequence: number): void {
    const sentAt = this.#sentAt.get(sequence);
    if (sentAt === undefined) {
      this.#tally.add('heartbeat:unknown-ack', `${this.#agent.agentId}: ack for unknown sequence ${sequence}`);
      return;
    }
    const now = performance.now();
    this.#sentAt.delete(sequence);
    this.#result.acked += 1;
    if (!this.#untimed.delete(sequence)) {
      this.#result.rtt.record(now - sentAt);
      if (this.#keepSamples) this.#result.rttMs.push(now - sentAt);
    }
    this.#acksOnStream += 1;
    if (this.#outSince !== undefined) {
      this.#result.outage.backMs.record(now - this.#outSince);
      this.#result.outage.backAtMs.push(epochMs());
      this.#outSince = undefined;
    }
    if (this.#droppedAt !== undefined) {
      this.#result.reconnect.backMs.record(now - this.#droppedAt);
      this.#droppedAt = undefined;
    }
    for (const task of this.#reports.get(sequence) ?? []) task.answeredAtMs = epochMs();
    this.#reports.delete(sequence);
  }
}

/** One TLS connection and the agents whose streams it carries. */
interface Connection {
  readonly index: number;
  client: IngestServiceClient;
  readonly agents: SimulatedAgent[];
  /** The agent's schedule for this connection's attempts: one per connection, as one per agent process. */
  readonly backoff: Backoff;
  /** Coming back after a failure: the other agents' failures on it join this attempt. */
  recovering: boolean;
}

/** Many agents on their own TLS connections (or several per connection), heartbeating on staggered timers. */
export class HeartbeatLoad {
  readonly #connections: Connection[];
  readonly #agents: SimulatedAgent[];
  readonly #options: HeartbeatLoadOptions;
  readonly #newClient: (index: number) => IngestServiceClient;
  readonly #tally = new ErrorTally();
  readonly result: HeartbeatLoadResult;
  /** performance.now() after which a dropped connection stops trying to come back. */
  #runEndsAt = Number.POSITIVE_INFINITY;

  private constructor(agents: readonly ActiveAgent[], newClient: (index: number) => IngestServiceClient, options: HeartbeatLoadOptions) {
    this.#options = options;
    this.#newClient = newClient;
    this.result = {
      sent: 0, acked: 0, lost: 0, errors: this.#tally.messages, errorCount: 0, errorsByKind: this.#tally.byKind,
      rttMs: [], rtt: new LatencyHistogram(), online: 0, tasks: [], reconnect: { droppedInFlight: 0, backMs: new LatencyHistogram(), attemptsRefused: 0 },
      outage: { streamsFailed: 0, cutInFlight: 0, attempts: 0, arrivalAtMs: [], attemptsFailed: 0, backMs: new LatencyHistogram(), backAtMs: [], firstFailedAtMs: null, stillOut: 0 },
    };
    this.#agents = agents.map((agent) => new SimulatedAgent(agent, this.result, this.#tally, options));
    const perConnection = options.agentsPerConnection ?? 1;
    this.#connections = Array.from({ length: Math.ceil(agents.length / perConnection) }, (_, index) => ({
      index,
      client: options.registeredClients?.[index] ?? newClient(index),
      agents: this.#agents.slice(index * perConnection, (index + 1) * perConnection),
      backoff: new Backoff(Math.random),
      recovering: false,
    }));
    if (options.reconnectAfterFailure) {
      for (const connection of this.#connections) {
        for (const agent of connection.agents) agent.recoverWith((healthy) => this.#recover(connection, healthy));
      }
    }
  }

  /** Opens every connection and every agent's Heartbeat stream. */
  static async connect(agents: readonly ActiveAgent[], newClient: (index: number) => IngestServiceClient, options: HeartbeatLoadOptions): Promise<HeartbeatLoad> {
    const load = new HeartbeatLoad(agents, newClient, options);
    let next = 0;
    const connectNext = async (): Promise<void> => {
      while (next < load.#connections.length) {
        const connection = load.#connections[next++]!;
        try {
          await connect(connection.client);
          for (const agent of connection.agents) agent.open(connection.client);
        } catch (error) {
          load.#tally.addCallError('connect', `connection ${connection.index}`, error);
        }
      }
    };
    await Promise.all(Array.from({ length: options.connectConcurrency }, connectNext));
    return load;
  }

  /** Heartbeats for the configured duration, then waits for the acks still in flight. */
  async run(): Promise<HeartbeatLoadResult> {
    const { intervalMs, durationMs, drainMs, reconnectAfterMs } = this.#options;
    this.#runEndsAt = performance.now() + durationMs;
    this.#agents.forEach((agent, index) => agent.start((index * intervalMs) / this.#agents.length, intervalMs));
    const storm = reconnectAfterMs === undefined ? undefined : setTimeout(() => void this.#reconnectAll(), reconnectAfterMs);
    await sleep(durationMs);
    clearTimeout(storm);
    for (const agent of this.#agents) agent.stop();
    this.result.online = this.#agents.filter((agent) => agent.online).length;
    this.result.outage.stillOut = this.#agents.filter((agent) => agent.out).length;
    const drainUntil = Date.now() + drainMs;
    while (this.#inFlight() > 0 && Date.now() < drainUntil) await sleep(50);
    this.result.lost = this.#inFlight();
    this.result.errorCount = this.#tally.total;
    return this.result;
  }

  async close(): Promise<void> {
    await Promise.all(this.#agents.map((agent) => agent.close(5_000)));
    for (const connection of this.#connections) connection.client.close();
  }

  /**
   * The reconnect storm: every connection closed at once, each back on its own jittered schedule.
   * DROPS_PER_TURN at a time with the event loop free between them: a fleet's agents each drop their
   * own connection, while one process dropping 9,000 in one turn stalled for over a second (grpc-js
   * cancels and RST_STREAMs) and so answered the first returning handshakes late.
   */
  async #reconnectAll(): Promise<void> {
    for (const [index, connection] of this.#connections.entries()) {
      if (index > 0 && index % DROPS_PER_TURN === 0) await setImmediate();
      for (const agent of connection.agents) agent.drop();
      connection.client.close();
      connection.backoff.reset();
      void this.#reconnect(connection, 'reconnect');
    }
  }

  /**
   * An agent's stream on `connection` failed: every stream on it is taken as failed (they share the
   * connection that went away), and it comes back on the agent's schedule, started over when the
   * stream was healthy.
   */
  #recover(connection: Connection, healthy: boolean): void {
    if (connection.recovering) return;
    connection.recovering = true;
    if (healthy) connection.backoff.reset();
    for (const agent of connection.agents) agent.fail();
    connection.client.close();
    void this.#reconnect(connection, 'outage').finally(() => (connection.recovering = false));
  }

  /**
   * Waits the agent's backoff, then makes one connection attempt that fails as fast as the agent's
   * call does (at the channel's first TRANSIENT_FAILURE, not after grpc's own retries), until one
   * connects or the run ends. A deliberate drop's failed attempts count as errors; an outage's are its figures.
   */
  async #reconnect(connection: Connection, cause: 'reconnect' | 'outage'): Promise<void> {
    while (performance.now() < this.#runEndsAt) {
      await sleep(connection.backoff.next());
      if (performance.now() >= this.#runEndsAt) return;
      connection.client = this.#newClient(connection.index);
      if (cause === 'outage') this.result.outage.attempts += 1;
      const attemptAt = epochMs();
      try {
        await connectOnce(connection.client, Math.max(1, Math.min(RECONNECT_TIMEOUT_MS, this.#runEndsAt - performance.now())));
        if (cause === 'outage') this.result.outage.arrivalAtMs.push(attemptAt);
        for (const agent of connection.agents) agent.open(connection.client);
        return;
      } catch (error) {
        if (cause === 'outage') this.result.outage.attemptsFailed += 1;
        else if ((error as { code?: number }).code === grpc.status.UNAVAILABLE) this.result.reconnect.attemptsRefused += 1;
        else this.#tally.addCallError('reconnect', `connection ${connection.index}`, error);
        connection.client.close();
      }
    }
  }

  #inFlight(): number {
    return this.#agents.reduce((sum, agent) => sum + agent.inFlight, 0);
  }
}
