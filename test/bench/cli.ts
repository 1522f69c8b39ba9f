/**
 * bench:cli — how long an admin command takes from spawn to exit, today's build side by side
 * with a build of the commit before the CLI stopped loading the server, in the same run and
 * against the same running appliance.
 *
 * The baseline is built from `git archive BENCH_CLI_BASELINE` (default BASELINE_REF) with that
 * commit's own scripts/build.mjs and this checkout's node_modules. Runs alternate between the two
 * builds so a busy moment of a shared machine hits both. Prints a markdown table for
 * docs/BENCHMARKS.md.
 * Wall time (spawn to exit) is what a person waits; CPU time (user + system, from GNU time) is what a
 * busy shared machine changes least, so both are shown.
 * Environment: BENCH_RUNS (default 20 per command and build), BENCH_CLI_BASELINE (a git ref).
 * Exits 1 when today's `hosts list` median is not under TARGET_MS.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { TestAppliance } from '../helpers/appliance.ts';
import { tempDir } from '../helpers/bundler-fixtures.ts';
import { APPLIANCE_BIN } from '../helpers/processes.ts';
import { buildBaseline } from './lib/baseline.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { describeMachine } from './lib/machine.ts';
import { distribution } from '../../loadtest/lib/stats.ts';

/** The last commit whose admin CLI loaded fastify, gRPC and x509 and ran an scrypt for every command. */
const BASELINE_REF = 'b9f5fe5';
const TARGET_MS = 300;
/** When Node alone takes longer than this to start, the machine is too busy for the figures to judge the CLI. */
const QUIET_FLOOR_MS = 100;
const progress = progressFor('bench:cli');

interface Sample {
  /** Spawn to exit, in ms. */
  wallMs: number;
  /** User + system CPU time of the command (GNU time, 10 ms resolution), in ms: what a busy machine changes least. */
  cpuMs: number;
}

/** One run under GNU time; a failing command ends the bench. */
function timeOnce(args: readonly string[], cpuFile: string): Sample {
  const started = performance.now();
  const result = spawnSync('/usr/bin/time', ['-f', '%U %S', '-o', cpuFile, process.execPath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const wallMs = performance.now() - started;
  if (result.status !== 0) throw new Error(`node ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  const [user, system] = readFileSync(cpuFile, 'utf8').trim().split(' ').map(Number);
  return { wallMs, cpuMs: ((user ?? 0) + (system ?? 0)) * 1000 };
}

interface Measure {
  label: string;
  /** The CLI arguments after the entry script; undefined for the bare `node -e 0` floor. */
  args: readonly string[] | undefined;
}

const runs = positiveIntegerEnv('BENCH_RUNS', 20);
const baselineRef = process.env.BENCH_CLI_BASELINE || BASELINE_REF;
const work = tempDir('ct-ops-bench-cli-');
let appliance: TestAppliance | undefined;
try {
  progress(`building the baseline ${baselineRef}`);
  const baselineBin = buildBaseline(baselineRef, work);
  appliance = await TestAppliance.start();
  const dataDir = appliance.dataDir;
  const measures: Measure[] = [
    { label: '`node -e 0` (floor: Node start alone)', args: undefined },
    { label: '`hosts list --help`', args: ['hosts', 'list', '--help'] },
    { label: '`hosts list` (HTTPS call, 0 hosts)', args: ['hosts', 'list', '--data-dir', dataDir] },
    { label: '`tokens list` (HTTPS call)', args: ['tokens', 'list', '--data-dir', dataDir] },
  ];
  const cpuFile = join(work, 'cpu');
  const summary = (samples: readonly Sample[]) => ({ wall: distribution(samples.map((sample) => sample.wallMs)), cpu: distribution(samples.map((sample) => sample.cpuMs)) });
  const rows: Array<{ label: string; before: ReturnType<typeof summary>; after: ReturnType<typeof summary> }> = [];
  for (const measure of measures) {
    progress(`${measure.label}: ${runs} runs per build`);
    const before: Sample[] = [];
    const after: Sample[] = [];
    for (let run = 0; run < runs; run += 1) {
      before.push(timeOnce(measure.args ? [baselineBin, ...measure.args] : ['-e', '0'], cpuFile));
      after.push(timeOnce(measure.args ? [APPLIANCE_BIN, ...measure.args] : ['-e', '0'], cpuFile));
    }
    rows.push({ label: measure.label, before: summary(before), after: summary(after) });
  }
  const machine = describeMachine();
  const ms = (value: number): string => `${Math.round(value)} ms`;
  const floor = rows[0]!.after.wall.p50;
  const hostsList = rows.find((row) => row.label.startsWith('`hosts list` '))!;
  const met = hostsList.after.wall.p50 < TARGET_MS;
  const verdict = `${met ? 'MET' : 'NOT MET'}${floor > QUIET_FLOOR_MS ? ` (unreliable: \`node -e 0\` alone took ${ms(floor)}; rerun on a quiet machine)` : ''}`;
  process.stdout.write(
    [
      '## Admin CLI: start to exit (`npm run bench:cli`)',
      '',
      `Command: \`${runs === 20 ? '' : `BENCH_RUNS=${runs} `}npm run bench:cli\``,
      '',
      `- Date: ${machine.date}`,
      `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
      `- Each figure: ${runs} runs of \`node dist/ct-ops-appliance.js …\`, spawn to exit, the two builds alternating; before = a build of commit ${baselineRef}, after = this checkout's build; both call the same running appliance on loopback.`,
      '',
      '| Command | before: wall median / p95 | before: CPU median | after: wall median / p95 | after: CPU median |',
      '| --- | --- | --- | --- | --- |',
      ...rows.map(({ label, before, after }) => `| ${label} | ${ms(before.wall.p50)} / ${ms(before.wall.p95)} | ${ms(before.cpu.p50)} | ${ms(after.wall.p50)} / ${ms(after.wall.p95)} | ${ms(after.cpu.p50)} |`),
      `| \`hosts list\` above the floor (wall median) | ${ms(hostsList.before.wall.p50 - rows[0]!.before.wall.p50)} | | ${ms(hostsList.after.wall.p50 - floor)} | |`,
      `| target: \`hosts list\` wall median under ${TARGET_MS} ms | | | ${verdict} | |`,
      '',
    ].join('\n'),
  );
  process.exitCode = met ? 0 : 1;
} finally {
  await appliance?.dispose();
  rmSync(work, { recursive: true, force: true });
}
