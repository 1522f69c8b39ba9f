/**
 * One generator process of ct-ops-loadtest (forked by main.ts with --worker): it simulates its share
 * of the agents and reports over IPC. The steps are driven by the parent, so that every process
 * registers, and then heartbeats, at the same moment:
 *   parent → { step: 'job', job }      worker makes its agents' keys → { step: 'prepared' }
 *   parent → { step: 'register' }      worker registers, connects   → { step: 'ready', ready }
 *   parent → { step: 'heartbeat' }     worker runs and drains       → { step: 'result', result }, then closes its streams and exits
 */
import { performance } from 'node:perf_hooks';
import { challengedRegisterSources, clientFactory, connect, signedRegisterRequests } from './lib/clients.ts';
import { probeEventLoopDelay } from './lib/event-loop.ts';
import { HeartbeatLoad, type OutageResult, type TaskRoundTrip } from './lib/heartbeat-load.ts';
import { InventoryLoad, type InventoryLoadResult } from './lib/inventory-load.ts';
import { registerAll } from './lib/register-load.ts';
import type { LatencyHistogramJson } from './lib/stats.ts';

export interface WorkerJob {
  readonly ingestAddress: string;
  readonly caPem: string;
  readonly orgToken: string;
  /** This worker's agents are numbered firstIndex … firstIndex + count - 1 (their hostnames). */
  readonly firstIndex: number;
  readonly count: number;
  /** register/v2 (challenge, as current agents) or register/v1 (signed timestamp, as bench:core). */
  readonly registerForm: 'challenge' | 'legacy';
  /** Every agent registers at once, each on its own new connection, instead of REGISTER_CONCURRENCY at a time. */
  readonly registerStorm: boolean;
  readonly agentsPerConnection: number;
  readonly intervalMs: number;
  readonly durationMs: number;
  readonly drainMs: number;
  readonly reconnectAfterMs: number | undefined;
  /** A failed stream comes back on the agent's backoff (HeartbeatLoadOptions.reconnectAfterFailure). */
  readonly reconnectAfterFailure: boolean;
  /** Packages in the scan each agent answers the appliance's inventory tasks with; 0: those tasks are only acknowledged. */
  readonly inventoryPackages: number;
  /** How many agent ids to report in `ready` (the parent queues tasks for them). */
  readonly reportAgentIds: number;
}

export interface WorkerReady {
  registered: number;
  registerWallMs: number;
  registerLatency: LatencyHistogramJson;
  registerErrorsByKind: Record<string, number>;
  registerErrors: string[];
  /** Failed Register attempts tried again (RegisterLoadResult.retried). */
  registerRetried: number;
  connectMs: number;
  agentIds: string[];
}

export interface WorkerResult {
  sent: number;
  acked: number;
  lost: number;
  online: number;
  rtt: LatencyHistogramJson;
  errorsByKind: Record<string, number>;
  errors: string[];
  tasks: TaskRoundTrip[];
  reconnect: { droppedInFlight: number; backMs: LatencyHistogramJson; attemptsRefused: number };
  outage: Omit<OutageResult, 'backMs'> & { backMs: LatencyHistogramJson };
  inventory: (Omit<InventoryLoadResult, 'latency'> & { latency: LatencyHistogramJson }) | undefined;
  /** This process while heartbeating: CPU seconds (all threads) over wall seconds, and its event-loop delay. */
  generator: { cpuSeconds: number; wallSeconds: number; eventLoopDelayP99Ms: number; eventLoopDelayMaxMs: number };
}

export type ToWorker = { step: 'job'; job: WorkerJob } | { step: 'register' } | { step: 'heartbeat' };
export type FromWorker = { step: 'prepared' } | { step: 'ready'; ready: WorkerReady } | { step: 'result'; result: WorkerResult };

/** Registers in flight per process outside a storm, as bench:core does. */
const REGISTER_CONCURRENCY = 50;
/**
 * How long (ms) after registration starts a failed Register is still tried again (as agents retry,
 * on their backoff): a registration storm's slowest agents are counted, not dropped at their first
 * deadline. Under the run's watchdog.
 */
const REGISTER_RETRY_MS = 150_000;
/** TLS handshakes in flight per process while the heartbeat connections open. */
const CONNECT_CONCURRENCY = 50;

function send(message: FromWorker): Promise<void> {
  return new Promise((resolve, reject) => process.send!(message, undefined, {}, (error) => (error ? reject(error) : resolve())));
}

const inbox: ToWorker[] = [];
let delivered: (() => void) | undefined;

/** The next message of the parent, which must be `step`. */
async function next<S extends ToWorker['step']>(step: S): Promise<Extract<ToWorker, { step: S }>> {
  while (inbox.length === 0) await new Promise<void>((resolve) => (delivered = resolve));
  const message = inbox.shift()!;
  if (message.step !== step) throw new Error(`expected step ${step} from the parent, got ${message.step}`);
  return message as Extract<ToWorker, { step: S }>;
}

async function work(): Promise<void> {
  const { job } = await next('job');
  const newClient = clientFactory(job.ingestAddress, job.caPem);
  const requests = job.registerForm === 'challenge'
    ? challengedRegisterSources(job.count, job.orgToken, job.firstIndex)
    : signedRegisterRequests(job.count, job.orgToken, job.firstIndex, 'load');
  await send({ step: 'prepared' });

  await next('register');
  // In a storm every agent dials its own connection as its Register goes out; otherwise a few connections are opened first.
  const registerClients = Array.from({ length: job.registerStorm ? job.count : Math.min(REGISTER_CONCURRENCY, job.count) }, (_, index) => newClient(-1 - index));
  if (!job.registerStorm) await Promise.all(registerClients.map((client) => connect(client)));
  const registration = await registerAll(requests, registerClients, { retryForMs: REGISTER_RETRY_MS, newClient: (slot) => newClient(-1 - slot) });
  // A storm's agents each registered on a connection of their own and stream on it, as real agents do;
  // otherwise the few registering connections close and each agent's connection opens afterwards.
  const registeredClients = job.registerStorm && job.agentsPerConnection === 1 ? registration.agents.map((agent) => agent.client) : undefined;
  const kept = new Set(registeredClients);
  for (const client of registration.clients) if (!kept.has(client)) client.close();
  const inventory = job.inventoryPackages > 0 ? new InventoryLoad(job.inventoryPackages) : undefined;
  const connectStarted = performance.now();
  const load = await HeartbeatLoad.connect(registration.agents, newClient, {
    intervalMs: job.intervalMs,
    durationMs: job.durationMs,
    drainMs: job.drainMs,
    connectConcurrency: CONNECT_CONCURRENCY,
    agentsPerConnection: job.agentsPerConnection,
    keepRttSamples: false,
    ...(registeredClients ? { registeredClients } : {}),
    ...(inventory ? { inventory } : {}),
    ...(job.reconnectAfterMs === undefined ? {} : { reconnectAfterMs: job.reconnectAfterMs }),
    reconnectAfterFailure: job.reconnectAfterFailure,
  });
  await send({
    step: 'ready',
    ready: {
      registered: registration.agents.length,
      registerWallMs: registration.wallMs,
      registerLatency: registration.latency.toJSON(),
      registerErrorsByKind: registration.errorsByKind,
      registerErrors: registration.errors.slice(0, 10),
      registerRetried: registration.retried,
      connectMs: performance.now() - connectStarted,
      agentIds: registration.agents.slice(0, job.reportAgentIds).map((agent) => agent.agentId),
    },
  });

  await next('heartbeat');
  const stopLoopProbe = probeEventLoopDelay();
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const heartbeats = await load.run();
  const wallSeconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const loopDelay = stopLoopProbe();
  await send({
    step: 'result',
    result: {
      sent: heartbeats.sent,
      acked: heartbeats.acked,
      lost: heartbeats.lost,
      online: heartbeats.online,
      rtt: heartbeats.rtt.toJSON(),
      errorsByKind: heartbeats.errorsByKind,
      errors: heartbeats.errors.slice(0, 10),
      tasks: heartbeats.tasks,
      reconnect: { droppedInFlight: heartbeats.reconnect.droppedInFlight, backMs: heartbeats.reconnect.backMs.toJSON(), attemptsRefused: heartbeats.reconnect.attemptsRefused },
      outage: { ...heartbeats.outage, backMs: heartbeats.outage.backMs.toJSON() },
      inventory: inventory && { ...inventory.result, latency: inventory.result.latency.toJSON(), errors: inventory.result.errors.slice(0, 10) },
      generator: {
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
        wallSeconds,
        eventLoopDelayP99Ms: loopDelay.p99Ms,
        eventLoopDelayMaxMs: loopDelay.maxMs,
      },
    },
  });
  // After the result, so that closing thousands of streams is not counted in the run's figures.
  await load.close();
}

/** Runs this process as a generator worker: it exits once its result is sent and its streams closed, or when the parent is gone. */
export function runWorker(): void {
  process.on('message', (message: ToWorker) => {
    inbox.push(message);
    delivered?.();
  });
  // An orphaned worker (the parent killed by its watchdog or by hand) must not go on loading the appliance.
  // SIGKILL, not exit(): exit() waits for the threadpool and was seen to hang there for minutes (a kill -9
  // test), keeping the caller's stdout pipe open; an orphan has nothing left to flush.
  process.on('disconnect', () => process.kill(process.pid, 'SIGKILL'));
  work().then(
    // Explicitly: closed gRPC channels may keep timers a while.
    () => process.exit(0),
    (error: unknown) => {
      process.stderr.write(`ct-ops-loadtest worker: ${(error as Error).stack ?? String(error)}\n`);
      process.exit(1);
    },
  );
}
