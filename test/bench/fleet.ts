/**
 * bench:fleet — issue 14's scale targets on this machine: BENCH_AGENTS agents (default 18,000)
 * heartbeating every 30 s for BENCH_DURATION seconds (default 120) through BENCH_INSTANCES ingest
 * processes (default 1), then (unless BENCH_FLOOR=0) the bare floor (loadtest/floor-server.ts, the
 * same transport settings, acks only) in the same layout with the same generators, in the same run.
 *
 * Layout: one instance runs on a fresh SQLite data directory; several run on one private PostgreSQL
 * cluster (test/helpers/postgres.ts), the first instance's keys and CA copied to the others
 * (docs/operations.md, "Adding an ingest instance"). Each instance (and each floor server) is driven
 * by its own ct-ops-loadtest with its share of the agents, in enough generator processes that none
 * holds more than AGENTS_PER_GENERATOR connections (this container allows 20,000 files a process).
 *
 * Reports per target and in all: agents online, heartbeats acked, lost, errors, RTT p50/p99/max, the
 * server's CPU per heartbeat (CPU over the heartbeat phase / heartbeats), its memory per agent (RSS at
 * its busiest minus RSS before the agents came, / agents), and its event-loop windows (the worst 10-s
 * window's p99, the longest delay, windows with a delay over 20 ms). Prints a markdown table for
 * docs/BENCHMARKS.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, createWriteStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { tempDir } from '../helpers/bundler-fixtures.ts';
import { startPostgres, type PostgresCluster } from '../helpers/postgres.ts';
import { APPLIANCE_BIN, REPO_ROOT } from '../helpers/processes.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { describeMachine } from './lib/machine.ts';

const LOADTEST_BIN = join(REPO_ROOT, 'dist/ct-ops-loadtest.js');
const FLOOR_BIN = join(REPO_ROOT, 'dist/ct-ops-loadtest-floor.js');
/** Connections per generator process, well within the 20,000 files a process may hold here. */
const AGENTS_PER_GENERATOR = 9_000;
/** The key and CA files the instances share (docs/operations.md, "Adding an ingest instance"). */
const SHARED_FILES = ['ca.crt', 'ca.key', 'jwt-signing.key', 'bundle.key', 'bundle.pub', 'admin-cli.token'];
const START_TIMEOUT_MS = 60_000;
const progress = progressFor('bench:fleet');

interface Server {
  readonly name: string;
  readonly dataDir: string;
  readonly child: ChildProcess;
}

interface TargetResult {
  server: Server;
  run: Record<string, any>;
}

/** Starts `args` with stdout and stderr in DATA_DIR.log, and waits for its appliance.json (written once it listens). */
async function startServer(name: string, dataDir: string, args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const log = createWriteStream(`${dataDir}.log`);
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!existsSync(join(dataDir, 'appliance.json'))) {
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`${name} did not start (see ${dataDir}.log)`);
    await sleep(100);
  }
  return { name, dataDir, child };
}

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode !== null) return;
  const exited = new Promise((resolve) => server.child.once('exit', resolve));
  server.child.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000).then(() => server.child.kill('SIGKILL'))]);
}

/** One ct-ops-loadtest per server, all at once; each server's share of `agents`. */
async function drive(servers: readonly Server[], agents: number, durationSecs: number): Promise<TargetResult[]> {
  return Promise.all(
    servers.map(async (server, index) => {
      const share = Math.floor(agents / servers.length) + (index < agents % servers.length ? 1 : 0);
      const processes = Math.ceil(share / AGENTS_PER_GENERATOR);
      const child = spawn(process.execPath, [LOADTEST_BIN, '--data-dir', server.dataDir, '--agents', String(share), '--processes', String(processes), '--interval', '30', '--duration', String(durationSecs), '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
      await new Promise((resolve) => child.once('close', resolve));
      const line = stdout.trim().split('\n').at(-1) ?? '';
      if (!line.startsWith('{')) throw new Error(`the load generator for ${server.name} printed no result (exit ${child.exitCode})`);
      // Kept beside the server's log: a later phase that fails loses nothing of this one.
      writeFileSync(`${server.dataDir}.result.json`, `${line}\n`);
      return { server, run: JSON.parse(line) };
    }),
  );
}

const round = (value: number, digits = 1): number => Math.round(value * 10 ** digits) / 10 ** digits;

/** The row of one target (or of all, `results` together): what docs/BENCHMARKS.md shows. */
function row(label: string, results: readonly TargetResult[]): string {
  const sum = (pick: (result: TargetResult) => number): number => results.reduce((total, result) => total + pick(result), 0);
  const max = (pick: (result: TargetResult) => number): number => Math.max(...results.map(pick));
  const agents = sum((result) => result.run.agents);
  const heartbeats = sum((result) => result.run.heartbeats);
  // The generator's own per-server figures, weighted back into totals for a row of several servers.
  const cpuUs = sum((result) => (result.run.appliance.cpu_us_per_heartbeat ?? Number.NaN) * result.run.heartbeats);
  const memoryKiB = sum((result) => (result.run.appliance.memory_kib_per_agent ?? Number.NaN) * result.run.agents);
  const loop = (pick: (delay: Record<string, number>) => number) => max((result) => (result.run.appliance.event_loop ? pick(result.run.appliance.event_loop) : Number.NaN));
  return `| ${label} | ${sum((result) => result.run.agents_online)} / ${agents} | ${heartbeats} | ${sum((result) => result.run.lost)} | ${sum((result) => result.run.errors)} | ${max((result) => result.run.rtt_p50_ms)} / ${max((result) => result.run.rtt_p99_ms)} / ${max((result) => result.run.rtt_max_ms)} ms | ${round(cpuUs / heartbeats, 0)} µs | ${round(memoryKiB / agents)} KiB | ${loop((delay) => delay.worst_window_p99_ms)} / ${loop((delay) => delay.max_ms)} ms, ${loop((delay) => delay.windows_over_20ms)} |`;
}

const agents = positiveIntegerEnv('BENCH_AGENTS', 18_000);
const instances = positiveIntegerEnv('BENCH_INSTANCES', 1);
const durationSecs = positiveIntegerEnv('BENCH_DURATION', 120);
// BENCH_FLOOR=0 skips the floor (the 50,000-agent target has no floor figure, and its run is long).
const withFloor = process.env.BENCH_FLOOR !== '0';
const root = tempDir('ct-ops-bench-fleet-');
let postgres: PostgresCluster | undefined;
const servers: Server[] = [];
const lines: string[] = [];
try {
  const env: NodeJS.ProcessEnv = { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' };
  if (instances > 1) {
    postgres = await startPostgres();
    env.CT_OPS_APPLIANCE_DATABASE = await postgres.createDatabase('fleet');
  }
  progress(`starting ${instances} appliance instance(s) on ${instances > 1 ? 'PostgreSQL' : 'SQLite'}`);
  for (let index = 0; index < instances; index += 1) {
    const dataDir = join(root, `instance-${index}`);
    if (index > 0) {
      mkdirSync(dataDir, { mode: 0o700 });
      for (const name of SHARED_FILES) copyFileSync(join(servers[0]!.dataDir, name), join(dataDir, name));
    }
    servers.push(await startServer(`instance ${index}`, dataDir, [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'localhost', '--san', '127.0.0.1'], env));
  }
  progress(`${agents} agents at 30 s for ${durationSecs} s against the appliance`);
  const appliance = await drive(servers, agents, durationSecs);
  await Promise.all(servers.splice(0).map(stopServer));
  await postgres?.stop();
  postgres = undefined;

  const floor: TargetResult[] = [];
  if (withFloor) {
    progress('the same against the floor');
    for (let index = 0; index < instances; index += 1) {
      const dataDir = join(root, `floor-${index}`);
      servers.push(await startServer(`floor ${index}`, dataDir, [FLOOR_BIN, '--data-dir', dataDir]));
    }
    floor.push(...(await drive(servers, agents, durationSecs)));
  }

  const machine = describeMachine();
  lines.push(
    `- ${agents.toLocaleString('en')} agents × 30 s for ${durationSecs} s, ${instances} ingest process(es) on ${instances > 1 ? 'PostgreSQL 15' : 'SQLite'}`,
    `- Date: ${machine.date}`,
    `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
    '',
    '| server | online / agents | heartbeats acked | lost | errors | RTT p50 / p99 / max | CPU per heartbeat | memory per agent | loop: worst window p99 / max, windows over 20 ms |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...appliance.map((result) => row(`appliance ${result.server.name}`, [result])),
    ...(instances > 1 ? [row('appliance, all', appliance)] : []),
    ...floor.map((result) => row(result.server.name, [result])),
    ...(instances > 1 && withFloor ? [row('floor, all', floor)] : []),
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  const lost = appliance.reduce((total, result) => total + result.run.lost, 0);
  process.exitCode = lost === 0 ? 0 : 1;
} finally {
  await Promise.all(servers.map(stopServer));
  await postgres?.stop();
  progress(`logs and data directories kept in ${root}`);
}
