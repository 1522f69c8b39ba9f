/**
 * ct-ops-loadtest: drives a running appliance on this machine the way N agents would (registration,
 * one Heartbeat stream each, optionally inventory scans, task answers and a reconnect storm) and
 * reports every heartbeat's round trip, errors by kind, and the appliance's and its own CPU and
 * memory. Bounded in agents and time, loopback (or named namespace addresses) only.
 * docs/operations.md, "Load generator", describes the flags, the JSON and the exit codes.
 */
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import { AdminClient } from '../appliance/cli/admin-client.ts';
import { dataDirOption, jsonOption } from '../appliance/cli/options.ts';
import { runCli } from '../common/cli.ts';
import { CtOpsError, ExitCode } from '../common/errors.ts';
import { clientFactory, connect } from './lib/clients.ts';
import { ErrorTally } from './lib/error-tally.ts';
import { applianceLoopDelay } from './lib/appliance-runtime.ts';
import { memoryMiB, openFileLimit } from './lib/proc.ts';
import { ProcessSampler } from './lib/process-sampler.ts';
import { summarise, type QueuedTasks, type RunSettings } from './lib/summary.ts';
import { assertLocalAddress, readTarget } from './lib/target.ts';
import { WorkerPool } from './lib/worker-pool.ts';
import { runWorker, type WorkerJob } from './worker.ts';

/** Hard bounds: the generator must not be able to exhaust the machine it shares with the appliance. */
const MAX_AGENTS = 60_000;
const MAX_DURATION_SECS = 3_600;
/** The shortest heartbeat interval an agent may have (agent/config/load.ts); the appliance refuses shorter ones. */
const MIN_INTERVAL_SECS = 5;
const MAX_PROCESSES = 16;
const MAX_INVENTORY_PACKAGES = 20_000;
const MAX_TASKS = 10_000;
/** The appliance allows 16 concurrent calls per connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS): a 17th stream would wait, never open. */
const MAX_AGENTS_PER_CONNECTION = 16;
/** Files a generator process keeps open besides its connections (its script, stdio, IPC, the event loop). */
const FILES_BESIDES_CONNECTIONS = 100;
/** Registration, connecting and closing may take this long beyond the heartbeat phase and its drain before the watchdog kills the run. */
const SETUP_BUDGET_SECS = 600;
/** Heartbeat time --tasks needs after the interval they are queued at, for their round trips. */
const TASK_WINDOW_SECS = 15;
/** How long the first connection to the ingest listener may take. */
const PROBE_TIMEOUT_MS = 10_000;
/** Admin API calls in flight while queueing tasks. */
const TASK_QUEUE_CONCURRENCY = 8;

interface Options {
  dataDir: string;
  json: boolean;
  agents: number;
  interval: number;
  duration: number;
  drain: number;
  processes: number;
  agentsPerConnection: number;
  address?: string;
  allowAddress: string[];
  appliancePid?: number;
  registerForm: 'challenge' | 'legacy';
  registerStorm: boolean;
  inventory: number;
  tasks: number;
  reconnectStormAfter?: number;
  reconnectAfterFailure: boolean;
}

/** A commander parser of a whole number in [min, max]. */
function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const parsed = Number(value);
    if (!/^\d+$/.test(value) || parsed < min || parsed > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return parsed;
  };
}

const progressTo = (enabled: boolean) => (message: string): void => {
  if (enabled) process.stderr.write(`ct-ops-loadtest: ${message}\n`);
};

/** Refuses settings that cannot run here: a per-process file limit too low for the connections, a storm after the end. */
function checkFeasible(options: Options): void {
  const perProcess = Math.ceil(options.agents / options.processes);
  // A register storm holds a connection per agent while registering; the heartbeat connections open after they close.
  const connections = options.registerStorm ? perProcess : Math.ceil(perProcess / options.agentsPerConnection);
  const limit = openFileLimit();
  if (connections + FILES_BESIDES_CONNECTIONS > limit) {
    throw new CtOpsError('ERR_USAGE', `${connections} connections per process exceed this machine's open-file limit (${limit}): raise --processes to ${Math.ceil(options.agents / (limit - FILES_BESIDES_CONNECTIONS))} or more`);
  }
  if (options.reconnectStormAfter !== undefined && options.reconnectStormAfter >= options.duration) {
    throw new CtOpsError('ERR_USAGE', `--reconnect-storm-after (${options.reconnectStormAfter} s) must fall within --duration (${options.duration} s)`);
  }
  if (options.inventory > 0 && options.agentsPerConnection >= MAX_AGENTS_PER_CONNECTION) {
    throw new CtOpsError('ERR_USAGE', `--inventory needs a free call on each connection beside its Heartbeat streams: --agents-per-connection ${MAX_AGENTS_PER_CONNECTION - 1} at most`);
  }
  if (options.tasks > 0 && options.duration < options.interval + TASK_WINDOW_SECS) {
    throw new CtOpsError('ERR_USAGE', `--tasks are queued after one interval and need time to come back: --duration ${options.interval + TASK_WINDOW_SECS} at least`);
  }
  if (options.tasks > options.agents) throw new CtOpsError('ERR_USAGE', `--tasks (${options.tasks}) cannot exceed --agents (${options.agents}): one task per agent`);
}

/** This process's share of the agents: as even as can be, the first processes taking one more. */
function jobsFor(options: Options, base: Omit<WorkerJob, 'firstIndex' | 'count' | 'reportAgentIds'>): WorkerJob[] {
  const jobs: WorkerJob[] = [];
  let firstIndex = 0;
  for (let index = 0; index < options.processes; index += 1) {
    const count = Math.floor(options.agents / options.processes) + (index < options.agents % options.processes ? 1 : 0);
    jobs.push({ ...base, firstIndex, count, reportAgentIds: Math.ceil(options.tasks / options.processes) });
    firstIndex += count;
  }
  return jobs;
}

/** Fails fast (ERR_APPLIANCE_UNREACHABLE) when the ingest listener does not complete a TLS handshake, rather than in every generator process. */
async function probeIngest(address: string, caPem: string): Promise<void> {
  const client = clientFactory(address, caPem)(0);
  try {
    await connect(client, PROBE_TIMEOUT_MS);
  } catch (cause) {
    throw new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `no TLS connection to the ingest listener at ${address} within ${PROBE_TIMEOUT_MS / 1000} s: ${(cause as Error).message}`, {}, { cause });
  } finally {
    client.close();
  }
}

/** Queues a config_reload task for each host through the admin API, as an admin's "reload config" does; when each was queued. */
async function queueTasks(admin: AdminClient, hostIds: readonly string[]): Promise<QueuedTasks> {
  const queuedAtMs = new Map<string, number>();
  const tally = new ErrorTally();
  let next = 0;
  const slot = async (): Promise<void> => {
    while (next < hostIds.length) {
      const hostId = hostIds[next++]!;
      const at = performance.timeOrigin + performance.now();
      try {
        const task = await admin.call<{ id: string }>('POST', `/api/v1/hosts/${encodeURIComponent(hostId)}/reload-config`);
        queuedAtMs.set(task.id, at);
      } catch (error) {
        tally.add(`queue:${(error as CtOpsError).code ?? 'OTHER'}`, `${hostId}: ${(error as Error).message}`);
      }
    }
  };
  await Promise.all(Array.from({ length: TASK_QUEUE_CONCURRENCY }, slot));
  return { queuedAtMs, errorsByKind: tally.byKind };
}

/** Prints the summary's fields one per line (nested ones as a.b), for a person at a terminal. */
function printText(summary: Record<string, unknown>, prefix = ''): void {
  for (const [key, value] of Object.entries(summary)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) printText(value as Record<string, unknown>, `${prefix}${key}.`);
    else process.stdout.write(`${`${prefix}${key}`.padEnd(40)} ${Array.isArray(value) ? value.join(' | ') : String(value)}\n`);
  }
}

async function loadTest(options: Options): Promise<void> {
  const progress = progressTo(process.stderr.isTTY && !options.json);
  checkFeasible(options);
  const target = readTarget(options.dataDir, { ...(options.address ? { address: options.address } : {}), ...(options.appliancePid ? { appliancePid: options.appliancePid } : {}) });
  await assertLocalAddress(target.ingestAddress, options.allowAddress);
  await probeIngest(target.ingestAddress, target.caPem);
  const admin = new AdminClient(options.dataDir);
  const rssBeforeMiB = target.appliancePid === undefined ? undefined : memoryMiB(target.appliancePid, 'VmRSS');
  const token = await admin.call<{ id: string; token: string }>('POST', '/api/v1/tokens', {
    label: 'ct-ops-loadtest', expires_in_secs: 86_400, max_uses: options.agents, auto_approve: true, tags: {},
  });

  const pool = new WorkerPool(fileURLToPath(import.meta.url), options.processes);
  const watchdogSecs = options.duration + options.drain + SETUP_BUDGET_SECS;
  const watchdog = setTimeout(() => {
    process.stderr.write(`ct-ops-loadtest: the run overran its ${watchdogSecs} s bound; stopping every generator process\n`);
    pool.kill();
    process.exit(ExitCode.TEMP_FAIL);
  }, watchdogSecs * 1000);
  try {
    const jobs = jobsFor(options, {
      ingestAddress: target.ingestAddress, caPem: target.caPem, orgToken: token.token, registerForm: options.registerForm, registerStorm: options.registerStorm,
      agentsPerConnection: options.agentsPerConnection, intervalMs: options.interval * 1000, durationMs: options.duration * 1000, drainMs: options.drain * 1000,
      reconnectAfterMs: options.reconnectStormAfter === undefined ? undefined : options.reconnectStormAfter * 1000, reconnectAfterFailure: options.reconnectAfterFailure, inventoryPackages: options.inventory,
    });
    progress(`making ${options.agents} agents' keys in ${options.processes} process(es)`);
    await pool.start(jobs);
    progress(`registering ${options.agents} agents${options.registerStorm ? ', all at once' : ''}, then opening their streams`);
    const setupStarted = performance.now();
    const ready = (await pool.step({ step: 'register' }, 'ready')).map((reply) => reply.ready);
    const setupSecs = (performance.now() - setupStarted) / 1000;

    progress(`heartbeating every ${options.interval} s for ${options.duration} s`);
    const phaseStartedMs = Date.now();
    const sampler = target.appliancePid === undefined ? undefined : new ProcessSampler(target.appliancePid).start();
    const results = pool.step({ step: 'heartbeat' }, 'result');
    let tasks: Promise<QueuedTasks> | undefined;
    if (options.tasks > 0) {
      // After one interval every agent has sent its first heartbeat, so each host is online to receive its task.
      tasks = sleep(options.interval * 1000 + 1_000).then(() => queueTasks(admin, ready.flatMap((worker) => worker.agentIds).slice(0, options.tasks)));
    }
    const finished = (await results).map((reply) => reply.result);
    // Read before the streams close: closing them all at once is not the heartbeat phase.
    const loop = await applianceLoopDelay(admin, phaseStartedMs);
    const appliance = sampler?.stop();
    progress('closing the streams');
    await pool.closed();
    const summary = summarise(settingsOf(options), ready, setupSecs, finished, { process: appliance, rssBeforeMiB, loop }, await tasks);
    if (options.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
    else printText(summary);
    const stillOut = (summary.outage as { still_out: number } | undefined)?.still_out ?? 0;
    process.exitCode = summary.errors === 0 && summary.lost === 0 && stillOut === 0 ? ExitCode.OK : 1;
  } catch (error) {
    pool.kill();
    throw error;
  } finally {
    clearTimeout(watchdog);
    // The token admits exactly this run's agents; left usable, leftover uses would enrol hosts without anyone asking.
    await admin.call('POST', `/api/v1/tokens/${encodeURIComponent(token.id)}/revoke`).catch(() => undefined);
  }
}

function settingsOf(options: Options): RunSettings {
  return {
    agents: options.agents, processes: options.processes, agentsPerConnection: options.agentsPerConnection, intervalSecs: options.interval,
    durationSecs: options.duration, registerForm: options.registerForm, registerStorm: options.registerStorm, inventoryPackages: options.inventory,
    tasks: options.tasks, reconnectStormAfterSecs: options.reconnectStormAfter, reconnectAfterFailure: options.reconnectAfterFailure,
  };
}

const program = new Command('ct-ops-loadtest')
  .description('drive a running appliance on this machine as N agents would, and measure it (loopback only)')
  .addOption(dataDirOption())
  .addOption(new Option('--agents <n>', `simulated agents, each with its own key (at most ${MAX_AGENTS})`).argParser(wholeNumber(1, MAX_AGENTS)).makeOptionMandatory())
  .addOption(new Option('--interval <secs>', `heartbeat interval, ${MIN_INTERVAL_SECS}-${MAX_DURATION_SECS} as the agent's; first heartbeats spread over one interval`).argParser(wholeNumber(MIN_INTERVAL_SECS, MAX_DURATION_SECS)).default(30))
  .addOption(new Option('--duration <secs>', `how long the agents heartbeat (at most ${MAX_DURATION_SECS})`).argParser(wholeNumber(1, MAX_DURATION_SECS)).default(60))
  .addOption(new Option('--drain <secs>', 'wait this long after the last heartbeat for acks; those still missing count as lost').argParser(wholeNumber(1, 120)).default(10))
  .addOption(new Option('--processes <n>', `generator processes sharing the agents, past one process's open-file limit (at most ${MAX_PROCESSES})`).argParser(wholeNumber(1, MAX_PROCESSES)).default(1))
  .addOption(new Option('--agents-per-connection <k>', `agents whose Heartbeat streams share one TLS connection (real agents: 1; at most ${MAX_AGENTS_PER_CONNECTION})`).argParser(wholeNumber(1, MAX_AGENTS_PER_CONNECTION)).default(1))
  .addOption(new Option('--address <host:port>', "the ingest (gRPC) address, instead of the one in the data directory's appliance.json"))
  .addOption(new Option('--allow-address <ip>', 'an address besides loopback that --address may name: a network namespace of this machine (repeatable)').argParser((value: string, previous: string[] = []) => [...previous, value]).default([]))
  .addOption(new Option('--appliance-pid <pid>', "the appliance's process, sampled for CPU and memory (default: the pid in appliance.json)").argParser(wholeNumber(1, 2 ** 22)))
  .addOption(new Option('--register-form <form>', 'challenge: GetRegisterChallenge then Register, as current agents; legacy: a signed timestamp').choices(['challenge', 'legacy']).default('challenge'))
  .addOption(new Option('--register-storm', 'every agent registers at once on its own new connection; reports registrations/s and the time until all are online').default(false))
  .addOption(new Option('--inventory <packages>', `each agent submits one inventory scan of this many packages (at most ${MAX_INVENTORY_PACKAGES})`).argParser(wholeNumber(0, MAX_INVENTORY_PACKAGES)).default(0))
  .addOption(new Option('--tasks <count>', `queue a config-reload task for this many agents through the admin API after one interval, and time their round trips (at most ${MAX_TASKS})`).argParser(wholeNumber(0, MAX_TASKS)).default(0))
  .addOption(new Option('--reconnect-storm-after <secs>', "drop every connection at this second of the run; each comes back after a real agent's jittered wait").argParser(wholeNumber(1, MAX_DURATION_SECS)))
  .addOption(new Option('--reconnect-after-failure', "agents whose stream fails (the appliance killed or unreachable) come back on the real agent's backoff instead of staying offline; reports the outage").default(false))
  .addOption(jsonOption())
  .addHelpText('after', '\nExit codes: 0 every heartbeat acked and no error; 1 the run completed with errors or lost heartbeats; 64 usage (bounds, a non-loopback address, too few processes for the file limit); 69 the appliance is unreachable; 75 the watchdog stopped an overrunning run.')
  .action((options: Options) => loadTest(options));

// A worker is this script forked again (WorkerPool): it takes its job over IPC, not flags.
if (process.argv[2] === '--worker') {
  runWorker();
} else {
  await runCli(program, process.argv);
  // Exit explicitly: the admin API's kept-alive connection or a closing gRPC channel would otherwise hold the process.
  process.exit();
}
