import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import * as grpc from '@grpc/grpc-js';
import type { HeartbeatRequest, HeartbeatResponse__Output, IngestServiceClient } from '../../../common/proto.ts';
import { connect } from './clients.ts';
import type { ActiveAgent } from './register-load.ts';

export interface HeartbeatLoadOptions {
  intervalMs: number;
  durationMs: number;
  /** TLS handshakes in flight while connecting, so connecting does not starve the appliance. */
  connectConcurrency: number;
  /** How long to wait after the last heartbeat for acks still in flight. */
  drainMs: number;
}

export interface HeartbeatLoadResult {
  sent: number;
  acked: number;
  /** Heartbeats still without an ack when the drain ended. */
  lost: number;
  errors: string[];
  rttMs: number[];
}

/** One agent on its own connection: heartbeats on a timer, timing each until its ack. */
class SimulatedAgent {
  readonly client: IngestServiceClient;
  readonly #agent: ActiveAgent;
  readonly #result: HeartbeatLoadResult;
  readonly #sentAt = new Map<number, number>();
  #call: grpc.ClientDuplexStream<HeartbeatRequest, HeartbeatResponse__Output> | undefined;
  #ended: Promise<void> = Promise.resolve();
  #streamFailed = false;
  #sequence = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(client: IngestServiceClient, agent: ActiveAgent, result: HeartbeatLoadResult) {
    this.client = client;
    this.#agent = agent;
    this.#result = result;
  }

  get inFlight(): number {
    return this.#sentAt.size;
  }

  open(): void {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${this.#agent.jwt}`);
    const call = this.client.Heartbeat(metadata);
    call.on('data', (message: HeartbeatResponse__Output) => this.#onMessage(message));
    call.on('error', () => undefined);
    this.#ended = new Promise((resolve) => {
      call.on('status', (status: grpc.StatusObject) => {
        if (status.code !== grpc.status.OK) {
          this.#streamFailed = true;
          this.#result.errors.push(`${this.#agent.agentId}: stream ended ${grpc.status[status.code]} ${status.details}`);
        }
        resolve();
      });
    });
    this.#call = call;
  }

  /** First heartbeat after offsetMs, then one every intervalMs: agents spread over the interval. */
  start(offsetMs: number, intervalMs: number): void {
    this.#timer = setTimeout(() => {
      this.#beat(intervalMs);
      this.#timer = setInterval(() => this.#beat(intervalMs), intervalMs);
    }, offsetMs);
  }

  stop(): void {
    clearTimeout(this.#timer);
  }

  /** Half-closes the stream and waits (bounded) for the appliance to end it. */
  async close(timeoutMs: number): Promise<void> {
    this.stop();
    this.#call?.end();
    await Promise.race([this.#ended, sleep(timeoutMs)]);
    this.client.close();
  }

  #beat(intervalMs: number): void {
    if (this.#streamFailed || !this.#call) return;
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
      interval_secs: intervalMs / 1000,
      agent_version: '0.1.0-bench',
    });
  }

  #onMessage(message: HeartbeatResponse__Output): void {
    if (message.kind !== 'ack') return;
    const sequence = Number(message.ack!.sequence);
    const sentAt = this.#sentAt.get(sequence);
    if (sentAt === undefined) {
      this.#result.errors.push(`${this.#agent.agentId}: ack for unknown sequence ${sequence}`);
      return;
    }
    this.#sentAt.delete(sequence);
    this.#result.acked += 1;
    this.#result.rttMs.push(performance.now() - sentAt);
  }
}

/** Many agents, each on its own TLS connection, heartbeating on staggered timers. */
export class HeartbeatLoad {
  readonly #agents: SimulatedAgent[];
  readonly #options: HeartbeatLoadOptions;
  readonly result: HeartbeatLoadResult = { sent: 0, acked: 0, lost: 0, errors: [], rttMs: [] };

  private constructor(agents: readonly ActiveAgent[], newClient: (index: number) => IngestServiceClient, options: HeartbeatLoadOptions) {
    this.#options = options;
    this.#agents = agents.map((agent, index) => new SimulatedAgent(newClient(index), agent, this.result));
  }

  /** Opens every agent's connection and Heartbeat stream. */
  static async connect(agents: readonly ActiveAgent[], newClient: (index: number) => IngestServiceClient, options: HeartbeatLoadOptions): Promise<HeartbeatLoad> {
    const load = new HeartbeatLoad(agents, newClient, options);
    let next = 0;
    const connectNext = async (): Promise<void> => {
      while (next < load.#agents.length) {
        const agent = load.#agents[next++]!;
        await connect(agent.client);
        agent.open();
      }
    };
    await Promise.all(Array.from({ length: options.connectConcurrency }, connectNext));
    return load;
  }

  /** Heartbeats for the configured duration, then waits for the acks still in flight. */
  async run(): Promise<HeartbeatLoadResult> {
    const { intervalMs, durationMs, drainMs } = this.#options;
    this.#agents.forEach((agent, index) => agent.start((index * intervalMs) / this.#agents.length, intervalMs));
    await sleep(durationMs);
    for (const agent of this.#agents) agent.stop();
    const drainUntil = Date.now() + drainMs;
    while (this.#inFlight() > 0 && Date.now() < drainUntil) await sleep(50);
    this.result.lost = this.#inFlight();
    return this.result;
  }

  async close(): Promise<void> {
    await Promise.all(this.#agents.map((agent) => agent.close(5_000)));
  }

  #inFlight(): number {
    return this.#agents.reduce((sum, agent) => sum + agent.inFlight, 0);
  }
}
