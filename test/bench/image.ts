/**
 * bench:image — the appliance image: build time and tarball size per CPU, and how long the x64
 * image takes from spawn to its first /healthz 200.
 *
 * Each image is built into a temporary folder with `scripts/build-image.mjs --target <arch>`, the
 * cache of node_modules/.cache/ct-ops-image as it is (the figure says whether the better-sqlite3
 * addon was compiled in the run: the first build on a machine compiles it, later ones reuse it).
 * Start: the extracted x64 image run with PATH=/usr/bin:/bin, spawn to /healthz 200 over HTTPS
 * trusting its CA: a first start (new data directory: CA, keys, database, admin) and a restart on it,
 * interleaved with the same restart of the clone's appliance (Node 20) as a yardstick of the load.
 * Install: the x64 image's own install.sh in a freshly booted Debian root, start to exit 0 after a
 * healthy /healthz (test/bench/image-install.ts; skipped, and said so, where nspawn cannot boot).
 * Prints a markdown section for docs/BENCHMARKS.md. Environment: BENCH_RUNS (start runs, default 5),
 * BENCH_IMAGE_TARGETS (comma-separated, default linux-x64,linux-arm64).
 * Exits 1 when the x64 tarball is over TARGET_TARBALL_MB, the restart median over TARGET_START_MS or
 * the install over INSTALL_TO_HEALTHY_TARGET_SECS.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { tempDir } from '../helpers/bundler-fixtures.ts';
import { httpsJson } from '../helpers/https.ts';
import { nspawnUnavailable } from '../helpers/nspawn.ts';
import { REPO_ROOT } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { INSTALL_TO_HEALTHY_TARGET_SECS, measureInstallToHealthy } from './image-install.ts';
import { describeMachine } from './lib/machine.ts';
import { distribution } from '../../loadtest/lib/stats.ts';

const TARGET_TARBALL_MB = 300;
const TARGET_START_MS = 2000;
const progress = progressFor('bench:image');
const runs = positiveIntegerEnv('BENCH_RUNS', 5);
const targets = (process.env.BENCH_IMAGE_TARGETS || 'linux-x64,linux-arm64').split(',');
const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const work = tempDir('ct-ops-bench-image-');
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

interface Built {
  target: string;
  seconds: number;
  addonCompiled: boolean;
  tarballBytes: number;
  ociBytes?: number;
  tarball: string;
}

const cacheDir = join(REPO_ROOT, 'node_modules/.cache/ct-ops-image');
const cachedAddons = (): number => (existsSync(cacheDir) ? readdirSync(cacheDir).filter((name) => name.endsWith('.node')).length : 0);
const built: Built[] = [];
for (const target of targets) {
  progress(`building ${target}`);
  const addonsBefore = cachedAddons();
  const started = performance.now();
  execFileSync(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build-image.mjs'), '--target', target, '--out-dir', work, '--quiet'], { cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'inherit'] });
  const seconds = (performance.now() - started) / 1000;
  const tarball = join(work, version, `ct-ops-appliance-${version}-${target}.tar.gz`);
  const oci = join(work, version, `ct-ops-appliance-${version}-${target}.oci.tar`);
  built.push({ target, seconds, addonCompiled: cachedAddons() > addonsBefore, tarballBytes: statSync(tarball).size, tarball, ...(existsSync(oci) ? { ociBytes: statSync(oci).size } : {}) });
}

/**
 * One start: spawn of `command args… serve` to /healthz 200 over HTTPS trusting the appliance's CA,
 * in ms; then SIGTERM. Its output is not read (a first start prints the admin password).
 */
async function startOnce(command: string, args: readonly string[], dataDir: string, releasePub: string): Promise<number> {
  const started = performance.now();
  const child = spawn(command, [...args, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'localhost', '--release-public-key-file', releasePub], {
    env: { PATH: '/usr/bin:/bin', CT_OPS_APPLIANCE_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  try {
    const port = await waitFor('appliance started', () => Number(/"http_port":(\d+)/.exec(out)?.[1]) || undefined, 30_000, 5);
    const ca = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
    await waitFor('/healthz 200', async () => (await httpsJson(port, ca, 'GET', '/healthz').catch(() => ({ status: 0 }))).status === 200, 30_000, 5);
    return performance.now() - started;
  } finally {
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
  }
}

const x64 = built.find((entry) => entry.target === 'linux-x64');
let starts: { imageFirst: ReturnType<typeof distribution>; imageRestart: ReturnType<typeof distribution>; cloneRestart: ReturnType<typeof distribution> } | undefined;
if (x64) {
  execFileSync('tar', ['-xzf', x64.tarball, '-C', work]);
  const top = join(work, `ct-ops-appliance-${version}-linux-x64`);
  const releasePub = join(top, 'dist/agents', version, 'release.pub');
  const image = { command: join(top, 'bin/ct-ops-appliance'), args: [] as string[] };
  // The same appliance from this clone (Node 20, node_modules): the machine's load at the same moment.
  const clone = { command: process.execPath, args: [join(REPO_ROOT, 'dist/ct-ops-appliance.js')] };
  const samples = { imageFirst: [] as number[], imageRestart: [] as number[], cloneRestart: [] as number[] };
  for (let run = 0; run < runs; run += 1) {
    progress(`start ${run + 1}/${runs}`);
    const imageData = join(work, `image-data-${run}`);
    const cloneData = join(work, `clone-data-${run}`);
    samples.imageFirst.push(await startOnce(image.command, image.args, imageData, releasePub));
    await startOnce(clone.command, clone.args, cloneData, releasePub);
    samples.imageRestart.push(await startOnce(image.command, image.args, imageData, releasePub));
    samples.cloneRestart.push(await startOnce(clone.command, clone.args, cloneData, releasePub));
  }
  starts = { imageFirst: distribution(samples.imageFirst), imageRestart: distribution(samples.imageRestart), cloneRestart: distribution(samples.cloneRestart) };
}
/** install.sh to a healthy /healthz in seconds, or why it was not measured. */
let install: { seconds: number } | { skipped: string } = { skipped: 'no x64 image built' };
if (x64) {
  const unavailable = nspawnUnavailable();
  if (unavailable) {
    install = { skipped: `not measured: ${unavailable}` };
  } else {
    progress('install.sh in a booted Debian root');
    install = { seconds: await measureInstallToHealthy({ version, dir: join(work, version), tarball: x64.tarball, topName: `ct-ops-appliance-${version}-linux-x64` }) };
  }
}

const machine = describeMachine();
/** One table cell: a figure of the image built for target, or a dash when it was not built. */
const cell = (target: string, figure: (entry: Built) => string): string => {
  const entry = built.find((candidate) => candidate.target === target);
  return entry ? figure(entry) : '–';
};
const tarballMet = !x64 || x64.tarballBytes <= TARGET_TARBALL_MB * 1e6;
const startMet = !starts || starts.imageRestart.p50 <= TARGET_START_MS;
const installMet = !('seconds' in install) || install.seconds <= INSTALL_TO_HEALTHY_TARGET_SECS;
const ms = (figures: ReturnType<typeof distribution>): string => `${Math.round(figures.p50)} ms / ${Math.round(figures.p95)} ms`;
process.stdout.write(
  [
    '## Appliance image: build, size and start (`npm run bench:image`)',
    '',
    `Command: \`${runs === 5 ? '' : `BENCH_RUNS=${runs} `}npm run bench:image\``,
    '',
    `- Date: ${machine.date}`,
    `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
    '- Build: `scripts/build-image.mjs --target <arch>` into a temporary folder, the agent release already built and verified; start: the extracted x64 image, PATH=/usr/bin:/bin, spawn to the first /healthz 200',
    '',
    '| Measure | linux-x64 | linux-arm64 |',
    '| --- | --- | --- |',
    `| build time | ${cell('linux-x64', (entry) => `${entry.seconds.toFixed(1)} s (addon ${entry.addonCompiled ? 'compiled' : 'cached'})`)} | ${cell('linux-arm64', (entry) => `${entry.seconds.toFixed(1)} s (addon ${entry.addonCompiled ? 'compiled' : 'cached'})`)} |`,
    `| tarball size | ${cell('linux-x64', (entry) => mb(entry.tarballBytes))} | ${cell('linux-arm64', (entry) => mb(entry.tarballBytes))} |`,
    `| OCI archive size | ${cell('linux-x64', (entry) => (entry.ociBytes === undefined ? 'not written' : mb(entry.ociBytes)))} | ${cell('linux-arm64', (entry) => (entry.ociBytes === undefined ? 'not written' : mb(entry.ociBytes)))} |`,
    `| first start (new data directory: CA, keys, admin): spawn to /healthz 200, median / p95 of ${runs} | ${starts ? ms(starts.imageFirst) : '–'} | – (not run under emulation) |`,
    `| restart (existing data directory): spawn to /healthz 200, median / p95 of ${runs} | ${starts ? ms(starts.imageRestart) : '–'} | – |`,
    `| the same restart from the clone (Node 20, node_modules), interleaved: the load of the moment | ${starts ? ms(starts.cloneRestart) : '–'} | |`,
    `| install.sh in a freshly booted Debian root (systemd-nspawn): start to exit 0 after a healthy /healthz | ${'seconds' in install ? `${install.seconds.toFixed(1)} s` : install.skipped} | – |`,
    `| target: x64 tarball ≤ ${TARGET_TARBALL_MB} MB with all six agents | ${tarballMet ? 'MET' : 'NOT MET'} | |`,
    `| target: restart median ≤ ${TARGET_START_MS / 1000} s | ${startMet ? 'MET' : 'NOT MET'} | |`,
    `| target: install to healthy ≤ ${INSTALL_TO_HEALTHY_TARGET_SECS} s | ${'seconds' in install ? (installMet ? 'MET' : 'NOT MET') : 'not measured'} | |`,
    '',
  ].join('\n'),
);
process.exitCode = tarballMet && startMet && installMet ? 0 : 1;
rmSync(work, { recursive: true, force: true });
