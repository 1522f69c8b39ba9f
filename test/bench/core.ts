/**
 * bench:core — how many agents one appliance enrols per second, and how quickly it
 * acknowledges heartbeats from 1,000 agents each on its own TLS connection.
 *
 * Runs a real appliance process on loopback; this process is the load generator.
 * Prints a table and rewrites its section of docs/BENCHMARKS.md.
 * Environment: BENCH_DURATION_SECS (default 60), BENCH_AGENTS (default 1000).
 */
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { TestAppliance } from '../helpers/appliance.ts';
import { REPO_ROOT } from '../helpers/processes.ts';
import { clientFactory, signedRegisterRequests } from './lib/clients.ts';
import { HeartbeatLoad } from './lib/heartbeat-load.ts';
import { describeMachine } from './lib/machine.ts';
import { cpuSeconds, memoryMiB, openFiles } from './lib/proc.ts';
import { registerAll } from './lib/register-load.ts';
import { textTable, targetMet, writeBenchmarksSection, type BenchResults } from './lib/report.ts';
import { distribution } from './lib/stats.ts';

const REGISTER_CONCURRENCY = 50;
const CONNECT_CONCURRENCY = 50;
const HEARTBEAT_INTERVAL_SECS = 5;
const TARGET_P99_MS = 50;
const DRAIN_MS = 10_000;
const EVENT_LOOP_SAMPLE_MS = 5;
/** Beyond the heartbeat phase: signing, registering, connecting, draining, closing. */
const OVERHEAD_BUDGET_MS = 240_000;
const BENCHMARKS_DOC = join(REPO_ROOT, 'docs/BENCHMARKS.md');

function positiveIntegerEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

function progress(message: string): void {
  process.stderr.write(`bench:core: ${message}\n`);
}

function describeCommand(durationSecs: number, agents: number): string {
  const env = [durationSecs === 60 ? '' : `BENCH_DURATION_SECS=${durationSecs}`, agents === 1000 ? '' : `BENCH_AGENTS=${agents}`].filter(Boolean);
  return [...env, 'npm run bench:core'].join(' ');
}

/** Kills everything and exits if the run overruns, so CI never hangs on a stuck bench. */
function armWatchdog(appliance: TestAppliance, budgetMs: number): NodeJS.Timeout {
  return setTimeout(() => {
    progress(`overran its ${Math.round(budgetMs / 1000)} s budget; stopping`);
    void appliance.dispose().finally(() => process.exit(1));
  }, budgetMs);
}

async function main(): Promise<void> {
  const durationSecs = positiveIntegerEnv('BENCH_DURATION_SECS', 60);
  const agents = positiveIntegerEnv('BENCH_AGENTS', 1000);
  const machine = describeMachine();
  const appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
  const pid = appliance.process.child.pid!;
  const watchdog = armWatchdog(appliance, durationSecs * 1000 + OVERHEAD_BUDGET_MS);
  try {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', String(agents), '--label', 'bench-core');
    const newClient = clientFactory(appliance.address, appliance.caCert);

    progress(`signing ${agents} Register requests`);
    const requests = signedRegisterRequests(agents, token);
    progress(`registering ${agents} agents, ${REGISTER_CONCURRENCY} in flight`);
    const applianceCpuBeforeRegistration = cpuSeconds(pid);
    const registration = await registerAll(requests, REGISTER_CONCURRENCY, newClient);
    const applianceCpuRegistering = cpuSeconds(pid) - applianceCpuBeforeRegistration;
    if (registration.agents.length === 0) throw new Error(`no agent registered: ${registration.errors.slice(0, 5).join('; ')}`);

    progress(`connecting ${registration.agents.length} agents, one TLS connection each`);
    const connectStarted = performance.now();
    const load = await HeartbeatLoad.connect(registration.agents, newClient, {
      intervalMs: HEARTBEAT_INTERVAL_SECS * 1000,
      durationMs: durationSecs * 1000,
      connectConcurrency: CONNECT_CONCURRENCY,
      drainMs: DRAIN_MS,
    });
    const connectSeconds = (performance.now() - connectStarted) / 1000;
    const applianceOpenFiles = openFiles(pid);

    progress(`heartbeating every ${HEARTBEAT_INTERVAL_SECS} s for ${durationSecs} s`);
    const applianceCpuBefore = cpuSeconds(pid);
    const generatorCpuBefore = process.cpuUsage();
    const loopDelay = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
    loopDelay.enable();
    const steadyStarted = performance.now();
    const heartbeats = await load.run();
    const steadySeconds = (performance.now() - steadyStarted) / 1000;
    loopDelay.disable();
    const generatorCpu = process.cpuUsage(generatorCpuBefore);
    const applianceCpuSteady = cpuSeconds(pid) - applianceCpuBefore;
    await load.close();

    const results: BenchResults = {
      command: describeCommand(durationSecs, agents),
      machine,
      agents,
      registerConcurrency: REGISTER_CONCURRENCY,
      durationSecs,
      intervalSecs: HEARTBEAT_INTERVAL_SECS,
      registration: {
        active: registration.agents.length,
        errors: registration.errors.length,
        perSec: registration.agents.length / (registration.wallMs / 1000),
        latencyMs: distribution(registration.latenciesMs),
        // Includes the 50 TLS handshakes made just before the clock starts: a slight overestimate.
        applianceCpuPercent: (100 * applianceCpuRegistering) / (registration.wallMs / 1000),
      },
      connect: { seconds: connectSeconds, applianceOpenFiles },
      heartbeats: {
        sent: heartbeats.sent,
        acked: heartbeats.acked,
        lost: heartbeats.lost,
        errors: heartbeats.errors.length,
        perSec: heartbeats.acked / durationSecs,
        rttMs: distribution(heartbeats.rttMs),
      },
      appliance: { peakRssMiB: memoryMiB(pid, 'VmHWM'), cpuSeconds: cpuSeconds(pid), steadyCpuPercent: (100 * applianceCpuSteady) / steadySeconds },
      loadGenerator: {
        steadyCpuPercent: (100 * (generatorCpu.user + generatorCpu.system)) / 1e6 / steadySeconds,
        // The histogram records whole sampling intervals; the delay is what exceeds one.
        eventLoopDelayP99Ms: Math.max(0, loopDelay.percentile(99) / 1e6 - EVENT_LOOP_SAMPLE_MS),
        eventLoopDelayMaxMs: Math.max(0, loopDelay.max / 1e6 - EVENT_LOOP_SAMPLE_MS),
      },
      targetP99Ms: TARGET_P99_MS,
    };
    for (const error of [...registration.errors, ...heartbeats.errors].slice(0, 10)) progress(`error: ${error}`);
    process.stdout.write(`${textTable(results)}\n`);
    writeBenchmarksSection(BENCHMARKS_DOC, results);
    progress(`wrote ${BENCHMARKS_DOC}`);
    process.exitCode = targetMet(results) ? 0 : 1;
  } finally {
    clearTimeout(watchdog);
    await appliance.dispose();
  }
}

await main();
