/**
 * bench:update — a fleet-wide self-update: BENCH_AGENTS (default 1,000) agents, each heartbeating on
 * its own TLS connection every 5 s, all offered one release at once and fetching its executable
 * (BENCH_RELEASE_MIB, default 8 MiB) from one appliance over HTTPS with their JWTs, as the agent does
 * (agent/update/download.ts; a 503 is followed after its Retry-After ± 50 %). Measures the time until
 * every agent has the file, the bytes per second served, the 503s, and the heartbeat round trip before
 * and during the downloads (issue 12: p99 must stay under 100 ms). The appliance's limits are its
 * defaults unless BENCH_DOWNLOAD_CONCURRENCY / BENCH_DOWNLOAD_RATE_MIB say otherwise.
 *
 * Runs a real appliance process on loopback. This process sends the heartbeats and times them; the
 * downloads run in a second process (lib/update-downloads.ts): in one process, decrypting 60 MiB/s
 * delayed the timing process's own event loop and the round trips measured it, not the appliance.
 * The heartbeat process's event loop delay is printed beside the round trips for that reason. The
 * downloaded files are written to memory: agents write on their own disks, not the appliance's.
 * Prints a table.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { publicKeyFile, signingKeyFromSeed } from '../../common/minisign.ts';
import { TestAppliance } from '../helpers/appliance.ts';
import { writeReleaseDir } from '../helpers/bundler-fixtures.ts';
import { clientFactory, connect, signedRegisterRequests } from '../../loadtest/lib/clients.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { HeartbeatLoad } from '../../loadtest/lib/heartbeat-load.ts';
import { describeMachine } from './lib/machine.ts';
import { cpuSeconds } from '../../loadtest/lib/proc.ts';
import { registerAll } from '../../loadtest/lib/register-load.ts';
import { distribution, type Distribution } from '../../loadtest/lib/stats.ts';
import type { DownloadJob, DownloadResult } from './lib/update-downloads.ts';

const progress = progressFor('bench:update');
const HEARTBEAT_INTERVAL_MS = 5_000;
/** Heartbeats alone before the downloads start: the baseline round trip. */
const BASELINE_MS = 20_000;
const VERSION = '9.0.0';
const EXECUTABLE = 'ct-ops-agent-linux-x64';
const TARGET_P99_MS = 100;

async function main(): Promise<void> {
  const agentCount = positiveIntegerEnv('BENCH_AGENTS', 1000);
  const releaseMiB = positiveIntegerEnv('BENCH_RELEASE_MIB', 8);
  const maxSecs = positiveIntegerEnv('BENCH_MAX_SECS', 900);
  const work = mkdtempSync(join(tmpdir(), 'ct-ops-bench-update-'));
  const releaseKey = signingKeyFromSeed(randomBytes(32));
  writeFileSync(join(work, 'release.pub'), publicKeyFile(releaseKey));
  const limits: Record<string, string> = {};
  if (process.env.BENCH_DOWNLOAD_CONCURRENCY) limits.CT_OPS_APPLIANCE_AGENT_DOWNLOAD_CONCURRENCY = process.env.BENCH_DOWNLOAD_CONCURRENCY;
  if (process.env.BENCH_DOWNLOAD_RATE_MIB) limits.CT_OPS_APPLIANCE_AGENT_DOWNLOAD_RATE_MIB = process.env.BENCH_DOWNLOAD_RATE_MIB;
  const appliance = await TestAppliance.start({ args: ['--release-public-key-file', join(work, 'release.pub')], env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info', ...limits } });
  const watchdog = setTimeout(() => {
    progress(`overran ${maxSecs} s; stopping`);
    void appliance.dispose().finally(() => process.exit(1));
  }, maxSecs * 1000);
  try {
    const release = writeReleaseDir(work, releaseKey, { version: VERSION, bytes: releaseMiB * 1024 * 1024, targets: [{ os: 'linux', arch: 'x64' }] });
    const size = statSync(join(release, EXECUTABLE)).size;
    const imported = await appliance.cli('releases', 'import', release);
    if (imported.code !== 0) throw new Error(`import failed: ${imported.stderr}`);

    progress(`registering ${agentCount} agents`);
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', String(agentCount), '--label', 'bench-update');
    const newClient = clientFactory(appliance.address, appliance.caCert);
    const registerClients = Array.from({ length: 50 }, (_, index) => newClient(index));
    await Promise.all(registerClients.map((client) => connect(client)));
    const { agents, errors: registerErrors } = await registerAll(signedRegisterRequests(agentCount, token), registerClients);
    for (const client of registerClients) client.close();
    if (agents.length !== agentCount) throw new Error(`${agentCount - agents.length} registrations failed: ${registerErrors.slice(0, 3).join('; ')}`);

    progress('connecting heartbeat streams');
    const load = await HeartbeatLoad.connect(agents, newClient, { intervalMs: HEARTBEAT_INTERVAL_MS, durationMs: maxSecs * 1000, connectConcurrency: 50, drainMs: 10_000 });
    const heartbeating = load.run();
    await sleep(BASELINE_MS);
    const baselineEnd = load.result.rttMs.length;

    progress(`${agentCount} agents fetching ${releaseMiB} MiB each`);
    const loopDelay = monitorEventLoopDelay({ resolution: 10 });
    loopDelay.enable();
    const cpuBefore = cpuSeconds(appliance.process.child.pid!);
    const downloader = fork(new URL('./lib/update-downloads.ts', import.meta.url), { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    // The agents' files go to memory (/dev/shm where there is one): real agents write on their own
    // disks, and 8 GB written to the appliance's disk here delayed its database, not its serving.
    const sink = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ct-ops-bench-downloads-'));
    const job: DownloadJob = { port: appliance.httpPort, caPem: appliance.caCert, path: `/agent/v1/releases/${VERSION}/${EXECUTABLE}`, size, jwts: agents.map((agent) => agent.jwt), workDir: sink };
    downloader.send(job);
    const [{ seconds, busy, failures }] = (await Promise.race([once(downloader, 'message'), once(downloader, 'exit').then(([code]) => Promise.reject(new Error(`the downloader exited ${String(code)}`)))])) as [DownloadResult];
    loopDelay.disable();
    rmSync(sink, { recursive: true, force: true });
    const applianceCpu = cpuSeconds(appliance.process.child.pid!) - cpuBefore;
    const duringEnd = load.result.rttMs.length;
    const baseline = distribution(load.result.rttMs.slice(0, baselineEnd));
    const during = distribution(load.result.rttMs.slice(baselineEnd, duringEnd));
    clearTimeout(watchdog);
    const machine = describeMachine();
    const row = (label: string, value: string): string => `| ${label} | ${value} |`;
    const rtt = (figures: Distribution): string => `${figures.p50.toFixed(1)} / ${figures.p99.toFixed(1)} / ${figures.max.toFixed(1)} ms (${figures.count} heartbeats)`;
    console.log(
      [
        `bench:update, ${machine.date}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}`,
        '',
        '| measure | value |',
        '|---|---|',
        row('agents, release size', `${agentCount}, ${(size / 2 ** 20).toFixed(1)} MiB`),
        row('all fetched in', `${seconds.toFixed(1)} s`),
        row('served', `${((agentCount * size) / 2 ** 20 / seconds).toFixed(1)} MiB/s`),
        row('turned away (503, then Retry-After)', String(busy)),
        row('other download failures', String(failures)),
        row('appliance CPU while serving', `${((100 * applianceCpu) / seconds).toFixed(0)} % of one core`),
        row('heartbeat RTT p50 / p99 / max, before', rtt(baseline)),
        row('heartbeat RTT p50 / p99 / max, during the downloads', rtt(during)),
        row('event loop delay of the heartbeat process, p99 / max, during', `${(loopDelay.percentile(99) / 1e6).toFixed(1)} / ${(loopDelay.max / 1e6).toFixed(1)} ms`),
        row(`target: p99 during < ${TARGET_P99_MS} ms`, during.p99 < TARGET_P99_MS ? 'MET' : 'NOT MET'),
      ].join('\n'),
    );
    // The heartbeats run on to their own end; nothing more is measured.
    void heartbeating.catch(() => undefined);
    await load.close();
  } finally {
    clearTimeout(watchdog);
    await appliance.dispose();
    rmSync(work, { recursive: true, force: true });
  }
  process.exit(0);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
