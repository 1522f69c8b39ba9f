/**
 * bench:core — how many agents one appliance enrols per second, and how quickly it
 * acknowledges heartbeats from 1,000 agents each on its own TLS connection.
 *
 * Runs a real appliance process on loopback; this process is the load generator.
 * Prints a table and rewrites its section of docs/BENCHMARKS.md.
 * Environment: BENCH_DURATION_SECS (default 60), BENCH_AGENTS (default 1000).
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { RegisterRequest } from '../../common/proto.ts';
import { TestAppliance } from '../helpers/appliance.ts';
import { REPO_ROOT } from '../helpers/processes.ts';
import { clientFactory, connect, signedRegisterRequests } from '../../loadtest/lib/clients.ts';
import { probeEventLoopDelay } from '../../loadtest/lib/event-loop.ts';
import { HeartbeatLoad } from '../../loadtest/lib/heartbeat-load.ts';
import { describeMachine } from './lib/machine.ts';
import { cpuSeconds, machineBusySeconds, memoryMiB, openFiles } from '../../loadtest/lib/proc.ts';
import { registerAll, type ActiveAgent } from '../../loadtest/lib/register-load.ts';
import { textTable, targetMet, writeBenchmarksSection, type BenchResults } from './lib/report.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';

const REGISTER_CONCURRENCY = 50;
const CONNECT_CONCURRENCY = 50;
const HEARTBEAT_INTERVAL_SECS = 5;
const TARGET_P99_MS = 50;
const DRAIN_MS = 10_000;
/** Beyond the heartbeat phase: signing, registering, connecting, draining, closing. */
const OVERHEAD_BUDGET_MS = 240_000;
const BENCHMARKS_DOC = join(REPO_ROOT, 'docs/BENCHMARKS.md');


const progress = progressFor('bench:core');

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

type NewClient = ReturnType<typeof clientFactory>;

/** Phase 1: every agent registers once, REGISTER_CONCURRENCY at a time. */
async function measureRegistration(pid: number, requests: readonly RegisterRequest[], newClient: NewClient): Promise<{ agents: ActiveAgent[]; errors: string[]; figures: BenchResults['registration'] }> {
  const clients = Array.from({ length: REGISTER_CONCURRENCY }, (_, index) => newClient(index));
  await Promise.all(clients.map((client) => connect(client)));
  const cpuBefore = cpuSeconds(pid);
  const registration = await registerAll(requests, clients);
  const cpuUsed = cpuSeconds(pid) - cpuBefore;
  for (const client of clients) client.close();
  const wallSecs = registration.wallMs / 1000;
  return {
    agents: registration.agents,
    errors: registration.errors,
    figures: {
      active: registration.agents.length,
      errors: registration.errorCount,
      perSec: registration.agents.length / wallSecs,
      latencyMs: registration.latency.summary(),
      applianceCpuPercent: (100 * cpuUsed) / wallSecs,
    },
  };
}

type HeartbeatFigures = Pick<BenchResults, 'connect' | 'heartbeats' | 'loadGenerator' | 'otherProcessesCpuPercent'> & { applianceSteadyCpuPercent: number };

/** Phase 2: every agent on its own connection heartbeats for durationSecs. */
async function measureHeartbeats(pid: number, agents: readonly ActiveAgent[], newClient: NewClient, durationSecs: number): Promise<{ errors: string[]; figures: HeartbeatFigures }> {
  const connectStarted = performance.now();
  const load = await HeartbeatLoad.connect(agents, newClient, {
    intervalMs: HEARTBEAT_INTERVAL_SECS * 1000,
    durationMs: durationSecs * 1000,
    connectConcurrency: CONNECT_CONCURRENCY,
    drainMs: DRAIN_MS,
    keepRttSamples: false,
  });
  const connect = { seconds: (performance.now() - connectStarted) / 1000, applianceOpenFiles: openFiles(pid) };

  progress(`heartbeating every ${HEARTBEAT_INTERVAL_SECS} s for ${durationSecs} s`);
  const applianceCpuBefore = cpuSeconds(pid);
  const generatorCpuBefore = process.cpuUsage();
  const machineBusyBefore = machineBusySeconds();
  const stopLoopProbe = probeEventLoopDelay();
  const started = performance.now();
  const heartbeats = await load.run();
  const seconds = (performance.now() - started) / 1000;
  const loopDelay = stopLoopProbe();
  const generatorCpu = process.cpuUsage(generatorCpuBefore);
  const generatorCpuSeconds = (generatorCpu.user + generatorCpu.system) / 1e6;
  const applianceCpuSeconds = cpuSeconds(pid) - applianceCpuBefore;
  const machineBusy = machineBusySeconds() - machineBusyBefore;
  await load.close();

  return {
    errors: heartbeats.errors,
    figures: {
      connect,
      heartbeats: {
        sent: heartbeats.sent,
        acked: heartbeats.acked,
        lost: heartbeats.lost,
        errors: heartbeats.errorCount,
        perSec: heartbeats.acked / durationSecs,
        rttMs: heartbeats.rtt.summary(),
      },
      applianceSteadyCpuPercent: (100 * applianceCpuSeconds) / seconds,
      loadGenerator: {
        steadyCpuPercent: (100 * generatorCpuSeconds) / seconds,
        eventLoopDelayP99Ms: loopDelay.p99Ms,
        eventLoopDelayMaxMs: loopDelay.maxMs,
      },
      // Other work on a shared machine skews the figures; this shows how much there was.
      otherProcessesCpuPercent: Math.max(0, (100 * (machineBusy - applianceCpuSeconds - generatorCpuSeconds)) / seconds),
    },
  };
}

async function main(): Promise<void> {
  const durationSecs = positiveIntegerEnv('BENCH_DURATION_SECS', 60);
  const agentCount = positiveIntegerEnv('BENCH_AGENTS', 1000);
  const machine = describeMachine();
  const appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
  const pid = appliance.process.child.pid!;
  const watchdog = armWatchdog(appliance, durationSecs * 1000 + OVERHEAD_BUDGET_MS);
  try {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', String(agentCount), '--label', 'bench-core');
    const newClient = clientFactory(appliance.address, appliance.caCert);

    progress(`signing ${agentCount} Register requests`);
    const requests = signedRegisterRequests(agentCount, token);
    progress(`registering ${agentCount} agents, ${REGISTER_CONCURRENCY} in flight`);
    const registration = await measureRegistration(pid, requests, newClient);
    if (registration.agents.length === 0) throw new Error(`no agent registered: ${registration.errors.slice(0, 5).join('; ')}`);
    progress(`connecting ${registration.agents.length} agents, one TLS connection each`);
    const { errors: heartbeatErrors, figures } = await measureHeartbeats(pid, registration.agents, newClient, durationSecs);

    const { applianceSteadyCpuPercent, ...heartbeatFigures } = figures;
    const results: BenchResults = {
      command: describeCommand(durationSecs, agentCount),
      machine,
      agents: agentCount,
      registerConcurrency: REGISTER_CONCURRENCY,
      durationSecs,
      intervalSecs: HEARTBEAT_INTERVAL_SECS,
      registration: registration.figures,
      ...heartbeatFigures,
      appliance: { peakRssMiB: memoryMiB(pid, 'VmHWM'), cpuSeconds: cpuSeconds(pid), steadyCpuPercent: applianceSteadyCpuPercent },
      targetP99Ms: TARGET_P99_MS,
    };
    for (const error of [...registration.errors, ...heartbeatErrors].slice(0, 10)) progress(`error: ${error}`);
    process.stdout.write(`${textTable(results)}\n`);
    writeBenchmarksSection(BENCHMARKS_DOC, results);
    progress(`wrote ${BENCHMARKS_DOC}`);
    process.exitCode = targetMet(results) ? 0 : 1;
  } finally {
    clearTimeout(watchdog);
    await appliance.dispose();
  }
}

// Exit explicitly: after a failure, open client channels would otherwise keep the process alive.
main().then(
  () => process.exit(),
  (error: unknown) => {
    progress(`failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    process.exit(1);
  },
);
