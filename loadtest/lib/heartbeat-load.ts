import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import { Backoff } from '../../agent/lifecycle/backoff.ts';
import type { HeartbeatRequest, HeartbeatResponse__Output, IngestServiceClient, Task__Output, TaskUpdate } from '../../common/proto.ts';
import { connect } from './clients.ts';
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
  /** Keep every RTT in arrival order in result.rttMs (default true); without, only the histogram counts them, in bounded memory. */
  keepRttSamples?: boolean;
  /**
   * Drops every connection this long (ms) into the run; each comes back after the wait a real agent
   * draws when a healthy stream ends (agent/lifecycle/backoff.ts), retrying on its schedule.
   */
  reconnectAfterMs?: number;
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
  };
}

/** How long one reconnect attempt may take before the agent's next wait (the agent's Heartbeat call deadline is of this order). */
const RECONNECT_TIMEOUT_MS = 20_000;

/** Wall-clock ms with sub-ms precision: task times are compared with the admin API's, taken in another process. */
const epochMs = (): number => performance.timeOrigin + performance.now();

/** Where an agent's stream stands: `dropped` while its connection comes back after a deliberate drop. */
type StreamState = 'closed' | 'streaming' | 'dropped' | 'failed';

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
  #ackedOnStream = false;
  #droppedAt: number | undefined;
  #sequence = 0;
  #intervalMs = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(agent: ActiveAgent, result: HeartbeatLoadResult, tally: ErrorTally, options: Pick<HeartbeatLoadOptions, 'keepRttSamples' | 'inventory'>) {
    this.#agent = agent;
    this.#result = result;
    this.#tally = tally;
    this.#keepSamples = options.keepRttSamples ?? true;
    this.#inventory = options.inventory;
  }

  get inFlight(): number {
    return this.#sentAt.size;
  }

  get online(): boolean {
    return this.#state === 'streaming' && this.#ackedOnStream;
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
          this.#state = status.code === grpc.status.OK ? 'closed' : 'failed';
          if (status.code !== grpc.status.OK) this.#tally.add(`heartbeat:${grpc.status[status.code]}`, `${this.#agent.agentId}: stream ended ${grpc.status[status.code]} ${status.details}`);
        }
        resolve();
      });
    });
    this.#client = client;
    this.#call = call;
    this.#ackedOnStream = false;
    this.#state = 'streaming';
    // Back after a drop: the agent's first heartbeat goes out as its stream opens, not at its next tick.
    if (this.#droppedAt !== undefined) this.#beat();
  }

  /** First heartbeat after offsetMs, then one every intervalMs: agents spread over the interval. */
  start(offsetMs: number, intervalMs: number): void {
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
    this.#reports.clear();
    this.#state = 'dropped';
    this.#droppedAt = performance.now();
    this.#call?.cancel();
  }

  /** Half-closes the stream and waits (bounded) for the appliance to end it. */
  async close(timeoutMs: number): Promise<void> {
    this.stop();
    if (this.#state === 'streaming') this.#call?.end();
    this.#state = 'closed';
    await Promise.race([this.#ended, sleep(timeoutMs)]);
  }

  #beat(updates: TaskUpdate[] = []): number | undefined {
    if (this.#state !== 'streaming' || !this.#call) return undefined;
    const sequence = ++this.#sequence;
    this.#sentAt.set(sequence, performance.now());
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
    this.#result.rtt.record(now - sentAt);
    if (this.#keepSamples) this.#result.rttMs.push(now - sentAt);
    this.#ackedOnStream = true;
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
      rttMs: [], rtt: new LatencyHistogram(), online: 0, tasks: [], reconnect: { droppedInFlight: 0, backMs: new LatencyHistogram() },
    };
    this.#agents = agents.map((agent) => new SimulatedAgent(agent, this.result, this.#tally, options));
    const perConnection = options.agentsPerConnection ?? 1;
    this.#connections = Array.from({ length: Math.ceil(agents.length / perConnection) }, (_, index) => ({
      index,
      client: newClient(index),
      agents: this.#agents.slice(index * perConnection, (index + 1) * perConnection),
    }));
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
    const storm = reconnectAfterMs === undefined ? undefined : setTimeout(() => this.#reconnectAll(), reconnectAfterMs);
    await sleep(durationMs);
    clearTimeout(storm);
    for (const agent of this.#agents) agent.stop();
    this.result.online = this.#agents.filter((agent) => agent.online).length;
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

  /** The reconnect storm: every connection closed at once, each back on its own jittered schedule. */
  #reconnectAll(): void {
    for (const connection of this.#connections) {
      for (const agent of connection.agents) agent.drop();
      connection.client.close();
      void this.#reconnect(connection);
    }
  }

  async #reconnect(connection: Connection): Promise<void> {
    const backoff = new Backoff(Math.random);
    backoff.reset();
    while (performance.now() < this.#runEndsAt) {
      await sleep(backoff.next());
      connection.client = this.#newClient(connection.index);
      try {
        await connect(connection.client, Math.max(1, Math.min(RECONNECT_TIMEOUT_MS, this.#runEndsAt - performance.now())));
        for (const agent of connection.agents) agent.open(connection.client);
        return;
      } catch (error) {
        this.#tally.addCallError('reconnect', `connection ${connection.index}`, error);
        connection.client.close();
      }
    }
  }

  #inFlight(): number {
    return this.#agents.reduce((sum, agent) => sum + agent.inFlight, 0);
  }
}
