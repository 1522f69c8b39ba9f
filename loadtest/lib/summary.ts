import type { WorkerReady, WorkerResult } from '../worker.ts';
import { addCounts } from './error-tally.ts';
import type { ApplianceLoopDelay } from './appliance-runtime.ts';
import type { ProcessFigures } from './process-sampler.ts';
import { busiestWindow, distribution, LatencyHistogram, type Distribution } from './stats.ts';

/** What a run was asked to do (the flags, validated). */
export interface RunSettings {
  agents: number;
  processes: number;
  agentsPerConnection: number;
  intervalSecs: number;
  durationSecs: number;
  registerForm: 'challenge' | 'legacy';
  registerStorm: boolean;
  inventoryPackages: number;
  tasks: number;
  reconnectStormAfterSecs: number | undefined;
  reconnectAfterFailure: boolean;
}

/** What the run saw of the appliance: /proc over the heartbeat phase, its RSS before the agents came, its own event-loop report. */
export interface ApplianceFigures {
  process: ProcessFigures | undefined;
  rssBeforeMiB: number | undefined;
  loop: ApplianceLoopDelay | undefined;
}

/** The tasks queued through the admin API: when each was queued (ms since the epoch), and the calls that failed. */
export interface QueuedTasks {
  queuedAtMs: ReadonlyMap<string, number>;
  errorsByKind: Record<string, number>;
}

const sum = (values: readonly number[]): number => values.reduce((total, value) => total + value, 0);
const round = (value: number, digits = 1): number | null => (Number.isFinite(value) ? Math.round(value * 10 ** digits) / 10 ** digits : null);

/** A distribution as `{ p50, p95, p99, max }` in ms, rounded to 0.1 ms (null when nothing was measured). */
function ms(summary: Distribution): Record<'count' | 'p50' | 'p95' | 'p99' | 'max', number | null> {
  return { count: summary.count, p50: round(summary.p50), p95: round(summary.p95), p99: round(summary.p99), max: round(summary.max) };
}

const least = (values: readonly number[]): number | null => (values.length === 0 ? null : values.reduce((a, b) => Math.min(a, b)));
const most = (values: readonly number[]): number | null => (values.length === 0 ? null : values.reduce((a, b) => Math.max(a, b)));

const merged = (histograms: Iterable<Parameters<LatencyHistogram['merge']>[0]>): LatencyHistogram => {
  const all = new LatencyHistogram();
  for (const histogram of histograms) all.merge(histogram);
  return all;
};

/**
 * The run's figures as one JSON object (snake_case; docs/operations.md lists the fields): the
 * workers' counts added and their histograms merged bucket by bucket, so every percentile is over
 * every heartbeat of every process.
 */
export function summarise(settings: RunSettings, ready: readonly WorkerReady[], setupSecs: number, results: readonly WorkerResult[], server: ApplianceFigures, tasks: QueuedTasks | undefined): Record<string, unknown> {
  const appliance = server.process;
  const registered = sum(ready.map((worker) => worker.registered));
  const registerWallSecs = Math.max(...ready.map((worker) => worker.registerWallMs)) / 1000;
  const rtt = merged(results.map((result) => result.rtt)).summary();
  const errorsByKind = {};
  for (const worker of ready) addCounts(errorsByKind, worker.registerErrorsByKind);
  for (const result of results) addCounts(addCounts(errorsByKind, result.errorsByKind), result.inventory?.errorsByKind ?? {});
  const acked = sum(results.map((result) => result.acked));
  const generatorSecs = Math.max(...results.map((result) => result.generator.wallSeconds));
  return {
    agents: settings.agents,
    processes: settings.processes,
    agents_per_connection: settings.agentsPerConnection,
    interval_secs: settings.intervalSecs,
    duration_secs: settings.durationSecs,
    register_form: settings.registerForm,
    registered,
    registrations_per_sec: round(registered / registerWallSecs),
    register_ms: ms(merged(ready.map((worker) => worker.registerLatency)).summary()),
    // Failed attempts tried again on the agent's backoff (not errors: an agent not registered in the end is).
    register_retried: sum(ready.map((worker) => worker.registerRetried)),
    setup_secs: round(setupSecs),
    agents_online: sum(results.map((result) => result.online)),
    heartbeats: acked,
    heartbeats_sent: sum(results.map((result) => result.sent)),
    heartbeats_per_sec: round(acked / settings.durationSecs),
    lost: sum(results.map((result) => result.lost)),
    errors: sum(Object.values(errorsByKind)),
    errors_by_kind: errorsByKind,
    error_examples: [...ready.flatMap((worker) => worker.registerErrors), ...results.flatMap((result) => result.errors)].slice(0, 10),
    rtt_p50_ms: round(rtt.p50),
    rtt_p95_ms: round(rtt.p95),
    rtt_p99_ms: round(rtt.p99),
    rtt_max_ms: round(rtt.max),
    appliance: {
      pid: appliance?.pid ?? null,
      cpu_percent: appliance ? round(appliance.cpuPercent) : null,
      cpu_percent_max_1s: appliance ? round(appliance.cpuPercentMax1s) : null,
      // Its CPU over the heartbeat phase divided by the heartbeats acked in it (the opening ones of the
      // first streams, sent while connecting, are not in the phase: a slight overstatement).
      cpu_us_per_heartbeat: appliance && acked > 0 ? round((appliance.cpuPercent / 100) * appliance.seconds * 1e6 / acked, 0) : null,
      rss_mib_before_agents: server.rssBeforeMiB === undefined ? null : round(server.rssBeforeMiB),
      rss_mib_start: appliance ? round(appliance.rssMiBStart) : null,
      rss_mib_max: appliance ? round(appliance.rssMiBMax) : null,
      rss_mib_end: appliance ? round(appliance.rssMiBEnd) : null,
      // What the run's agents cost it: its busiest RSS over what it held before they came.
      memory_kib_per_agent: appliance && server.rssBeforeMiB !== undefined ? round(((appliance.rssMiBMax - server.rssBeforeMiB) * 1024) / settings.agents) : null,
      // From its own runtime report (GET /api/v1/appliance/runtime): the 10-s windows of the heartbeat phase.
      event_loop: server.loop
        ? { windows: server.loop.windows, worst_window_p99_ms: server.loop.worstWindowP99Ms, max_ms: server.loop.maxMs, windows_over_20ms: server.loop.windowsOver20Ms }
        : null,
    },
    generator: {
      // All processes together, % of one core: near 100 % per process, the generator itself limits the figures.
      cpu_percent: round((100 * sum(results.map((result) => result.generator.cpuSeconds))) / generatorSecs),
      event_loop_delay_p99_ms: round(Math.max(...results.map((result) => result.generator.eventLoopDelayP99Ms))),
      event_loop_delay_max_ms: round(Math.max(...results.map((result) => result.generator.eventLoopDelayMaxMs))),
    },
    ...(settings.registerStorm ? { register_storm: { registrations_per_sec: round(registered / registerWallSecs), all_online_secs: round(setupSecs) } } : {}),
    ...(settings.reconnectStormAfterSecs === undefined ? {} : { reconnect_storm: reconnectFigures(settings, results) }),
    ...(settings.reconnectAfterFailure ? { outage: outageFigures(results) } : {}),
    ...(settings.inventoryPackages > 0 ? { inventory: inventoryFigures(settings, results) } : {}),
    ...(tasks === undefined ? {} : { tasks: taskFigures(tasks, results) }),
  };
}

function reconnectFigures(settings: RunSettings, results: readonly WorkerResult[]): Record<string, unknown> {
  const back = merged(results.map((result) => result.reconnect.backMs)).summary();
  return {
    after_secs: settings.reconnectStormAfterSecs,
    dropped_in_flight: sum(results.map((result) => result.reconnect.droppedInFlight)),
    // Refused at once and retried after the agent's backoff: deliberate, not errors (timeouts are).
    attempts_refused: sum(results.map((result) => result.reconnect.attemptsRefused)),
    agents_back: back.count,
    back_ms: ms(back),
    // The last agent's first ack on its new stream: the time until the whole fleet was back.
    all_back_secs: back.count === settings.agents ? round(back.max / 1000) : null,
  };
}

/** Returns closer together than this are one "arrival" for the herd figure. */
const ARRIVAL_WINDOW_MS = 1_000;

function outageFigures(results: readonly WorkerResult[]): Record<string, unknown> {
  const outages = results.map((result) => result.outage);
  const back = merged(outages.map((outage) => outage.backMs)).summary();
  const backAt = outages.flatMap((outage) => outage.backAtMs);
  const failedAt = outages.flatMap((outage) => (outage.firstFailedAtMs === null ? [] : [outage.firstFailedAtMs]));
  const stillOut = sum(outages.map((outage) => outage.stillOut));
  return {
    streams_failed: sum(outages.map((outage) => outage.streamsFailed)),
    cut_in_flight: sum(outages.map((outage) => outage.cutInFlight)),
    reconnect_attempts: sum(outages.map((outage) => outage.attempts)),
    reconnect_attempts_failed: sum(outages.map((outage) => outage.attemptsFailed)),
    agents_back: back.count,
    still_out: stillOut,
    back_ms: ms(back),
    // Every agent that lost its stream is streaming again: the longest outage, failure to first ack.
    all_back_secs: stillOut === 0 && back.count > 0 ? round(back.max / 1000) : null,
    // Ms since the epoch, to set against the caller's own clock (when the appliance was killed, listened again).
    first_failed_at_ms: least(failedAt),
    first_back_at_ms: least(backAt),
    last_back_at_ms: most(backAt),
    // The most connections that came back whose attempt began within one second: the agents' spread (a herd shows as most of the fleet).
    busiest_second_arrivals: busiestWindow(outages.flatMap((outage) => outage.arrivalAtMs), ARRIVAL_WINDOW_MS),
    // The most first acks within one second: the attempts' spread as the appliance served them (a queue behind a slow start bunches them).
    busiest_second_back: busiestWindow(backAt, ARRIVAL_WINDOW_MS),
  };
}

function inventoryFigures(settings: RunSettings, results: readonly WorkerResult[]): Record<string, unknown> {
  const runs = results.flatMap((result) => (result.inventory ? [result.inventory] : []));
  return {
    packages_per_scan: settings.inventoryPackages,
    submitted: sum(runs.map((run) => run.submitted)),
    completed: sum(runs.map((run) => run.completed)),
    scan_ms: ms(merged(runs.map((run) => run.latency)).summary()),
  };
}

function taskFigures(queued: QueuedTasks, results: readonly WorkerResult[]): Record<string, unknown> {
  const ours = results.flatMap((result) => result.tasks).filter((task) => queued.queuedAtMs.has(task.taskId));
  const since = (task: { taskId: string }, at: number): number => at - queued.queuedAtMs.get(task.taskId)!;
  const answered = ours.filter((task) => task.answeredAtMs !== undefined);
  return {
    queued: queued.queuedAtMs.size,
    delivered: ours.length,
    answered: answered.length,
    queue_errors_by_kind: queued.errorsByKind,
    // From the admin API call that queued it to the agent holding it, and to the ack of the heartbeat reporting it done.
    delivery_ms: ms(distribution(ours.map((task) => since(task, task.receivedAtMs)))),
    round_trip_ms: ms(distribution(answered.map((task) => since(task, task.answeredAtMs!)))),
  };
}
