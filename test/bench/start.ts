/**
 * bench:start — the CPU an appliance spends from exec until its gRPC port accepts connections (what
 * a restart costs before agents can come back; issue 14: under 0.5 s, so it beats an agent's first
 * retry, 1 s), and until it is fully started (the admin HTTPS port too), today's build side by side
 * with a baseline build in the same run.
 *
 * Each build serves its own data directory, made by one start that is not counted (the first start
 * generates the CA and keys). Then BENCH_RUNS (default 10) starts per build, alternating: `serve` on
 * loopback with a fixed free gRPC port, which the bench tries to connect to every 2 ms; at the first
 * accepted connection it reads the process's user + system CPU from /proc/PID/stat (10 ms ticks), and
 * again at the "appliance started" log line; then SIGTERM. The baseline is `git archive
 * BENCH_START_BASELINE` (default BASELINE_REF) built with its own scripts/build.mjs.
 * Prints a markdown table for docs/BENCHMARKS.md; exits 1 when today's p95 CPU to the gRPC port is
 * not under TARGET_MS.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { cpuSeconds } from '../../loadtest/lib/proc.ts';
import { distribution, type Distribution } from '../../loadtest/lib/stats.ts';
import { tempDir } from '../helpers/bundler-fixtures.ts';
import { freePort } from '../helpers/ports.ts';
import { APPLIANCE_BIN } from '../helpers/processes.ts';
import { buildBaseline } from './lib/baseline.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { describeMachine } from './lib/machine.ts';

/** The last commit whose appliance loaded every package from node_modules and the admin API before the gRPC port listened. */
const BASELINE_REF = '79089ad';
const TARGET_MS = 500;
/** A start that has not listened by then has failed. */
const START_TIMEOUT_MS = 30_000;
const progress = progressFor('bench:start');

interface StartSample {
  /** CPU (user + system, ms) from exec until the gRPC port accepted a connection. */
  cpuToGrpcMs: number;
  /** Wall time (ms) from spawn until the gRPC port accepted a connection. */
  wallToGrpcMs: number;
  /** CPU (ms) until the "appliance started" log line: the admin HTTPS port listens too. */
  cpuToStartedMs: number;
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** One start of `bin` serving `dataDir`, measured; the process is stopped before it returns. */
async function startOnce(bin: string, dataDir: string): Promise<StartSample> {
  const grpcPort = await freePort();
  const started = performance.now();
  const child = spawn(process.execPath, [bin, 'serve', '--data-dir', dataDir, '--grpc-port', String(grpcPort), '--http-port', '0', '--listen', '127.0.0.1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    const pid = child.pid!;
    while (!(await accepts(grpcPort))) {
      if (child.exitCode !== null || performance.now() - started > START_TIMEOUT_MS) throw new Error(`the appliance did not listen on ${grpcPort}: ${output}`);
      await sleep(2);
    }
    const cpuToGrpcMs = cpuSeconds(pid) * 1000;
    const wallToGrpcMs = performance.now() - started;
    while (!output.includes('"appliance started"')) {
      if (child.exitCode !== null || performance.now() - started > START_TIMEOUT_MS) throw new Error(`the appliance did not start: ${output}`);
      await sleep(2);
    }
    return { cpuToGrpcMs, wallToGrpcMs, cpuToStartedMs: cpuSeconds(pid) * 1000 };
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

const runs = positiveIntegerEnv('BENCH_RUNS', 10);
const baselineRef = process.env.BENCH_START_BASELINE || BASELINE_REF;
const work = tempDir('ct-ops-bench-start-');
try {
  progress(`building the baseline ${baselineRef}`);
  const builds = [
    { label: `before (${baselineRef})`, bin: buildBaseline(baselineRef, work), dataDir: join(work, 'data-before'), samples: [] as StartSample[] },
    { label: 'after (this checkout)', bin: APPLIANCE_BIN, dataDir: join(work, 'data-after'), samples: [] as StartSample[] },
  ];
  // The first start of a data directory makes its CA and keys: not what a restart costs.
  for (const build of builds) await startOnce(build.bin, build.dataDir);
  for (let run = 0; run < runs; run += 1) {
    progress(`run ${run + 1} of ${runs}`);
    for (const build of builds) build.samples.push(await startOnce(build.bin, build.dataDir));
  }
  const machine = describeMachine();
  const figure = (values: Distribution): string => `${Math.round(values.p50)} / ${Math.round(values.p95)} / ${Math.round(values.max)}`;
  const of = (samples: readonly StartSample[], field: keyof StartSample) => distribution(samples.map((sample) => sample[field]));
  const after = of(builds[1]!.samples, 'cpuToGrpcMs');
  const met = after.p95 < TARGET_MS;
  process.stdout.write(
    [
      '## Appliance start: CPU until the agents\' port listens (`npm run bench:start`)',
      '',
      `Command: \`${runs === 10 ? '' : `BENCH_RUNS=${runs} `}npm run bench:start\``,
      '',
      `- Date: ${machine.date}`,
      `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
      `- ${runs} restarts per build of an existing data directory (SQLite), alternating; CPU = user + system of the appliance process (10 ms ticks).`,
      '',
      '| Build | CPU to gRPC listening, ms p50 / p95 / max | wall to gRPC listening, ms p50 / p95 / max | CPU to fully started (HTTPS too), ms p50 / p95 / max |',
      '| --- | --- | --- | --- |',
      ...builds.map((build) => `| ${build.label} | ${figure(of(build.samples, 'cpuToGrpcMs'))} | ${figure(of(build.samples, 'wallToGrpcMs'))} | ${figure(of(build.samples, 'cpuToStartedMs'))} |`),
      `| target: p95 CPU to gRPC listening under ${TARGET_MS} ms | ${met ? 'MET' : 'NOT MET'} | | |`,
      '',
    ].join('\n'),
  );
  process.exitCode = met ? 0 : 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
