/**
 * bench:bundle — how long `ct-ops-bundle build` takes for all six targets, side by
 * side with `zip -r -6` compressing the very same files in the same run, and how
 * large the zips are. Prints a markdown table for docs/BENCHMARKS.md.
 *
 * Executables: dist/agents/<version>/ (from `npm run build:agents`, checked against
 * its signed SHA256SUMS with its release.pub). When none are built, each target gets
 * a stand-in of the same nature (this machine's node binary plus the target name),
 * and the table says so.
 * Environment: BENCH_AGENTS_DIR (default dist/agents), BENCH_RUNS (default 3, median).
 * Exits 1 when the bundler is slower than zip.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { blake2b512, publicKeyFile, signDigest, signingKeyFromSeed } from '../../common/minisign.ts';
import { ensureTlsMaterial } from '../../appliance/pki/certificates.ts';
import { ensureBundleKey, RELEASE_PUBLIC_KEY_FILE } from '../../appliance/pki/signing-keys.ts';
import { ALL_TARGETS, buildBundle, bundleBaseName, parseBundleRequest, type BuiltBundle, type Target } from '../../bundler/index.ts';
import { loadTemplates } from '../../bundler/build/templates.ts';
import { formatSha256Sums, sha256Hex } from '../../bundler/lib/sha256sums.ts';
import { releaseExecutableName } from '../../bundler/lib/targets.ts';
import { tempDir, writeTemplates } from '../helpers/bundler-fixtures.ts';
import { REPO_ROOT } from '../helpers/processes.ts';
import { describeMachine } from './lib/machine.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';

const SYNTHETIC_VERSION = '0.0.0-bench';

const progress = progressFor('bench:bundle');


interface Release {
  agentsDir: string;
  version: string;
  releasePub: string;
  real: boolean;
}

/** The built release, or stand-ins signed by a throw-away release key. */
function findRelease(work: string): Release {
  const agentsDir = process.env.BENCH_AGENTS_DIR || join(REPO_ROOT, 'dist', 'agents');
  const versions = existsSync(agentsDir) ? readdirSync(agentsDir).filter((name) => existsSync(join(agentsDir, name, 'SHA256SUMS.minisig')) && existsSync(join(agentsDir, name, 'release.pub'))) : [];
  const complete = versions.filter((version) => ALL_TARGETS.every((target) => existsSync(join(agentsDir, version, releaseExecutableName(target)))));
  if (complete.length > 0) {
    const version = complete.sort().at(-1)!;
    return { agentsDir, version, releasePub: readFileSync(join(agentsDir, version, 'release.pub'), 'utf8'), real: true };
  }
  progress(`no complete release under ${agentsDir}: using stand-in executables (${process.execPath} + target name)`);
  const syntheticDir = join(work, 'agents');
  const dir = join(syntheticDir, SYNTHETIC_VERSION);
  mkdirSync(dir, { recursive: true });
  const node = readFileSync(process.execPath);
  const entries = ALL_TARGETS.map((target) => {
    const name = releaseExecutableName(target);
    const data = Buffer.concat([node, Buffer.from(`\n${name}\n`)]);
    writeFileSync(join(dir, name), data, { mode: 0o755 });
    return { name, sha256: sha256Hex(data) };
  });
  const key = signingKeyFromSeed(new Uint8Array(32).fill(42));
  const sums = formatSha256Sums(entries);
  writeFileSync(join(dir, 'SHA256SUMS'), sums);
  writeFileSync(join(dir, 'SHA256SUMS.minisig'), signDigest(blake2b512(sums), key, 'timestamp:0\tfile:SHA256SUMS'));
  return { agentsDir: syntheticDir, version: SYNTHETIC_VERSION, releasePub: publicKeyFile(key), real: false };
}

/** The repository's installers and units when every target's are there, else stand-ins. */
function findTemplates(work: string): { dir: string; real: boolean } {
  try {
    for (const target of ALL_TARGETS) loadTemplates(REPO_ROOT, target.os);
    return { dir: REPO_ROOT, real: true };
  } catch {
    return { dir: writeTemplates(join(work, 'templates')), real: false };
  }
}

async function inParallel<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  });
  await Promise.all(lanes);
  return results;
}

function runZip(cwd: string, output: string, folder: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('zip', ['-r', '-6', '-q', '-X', output, folder], { cwd, stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`zip exited ${code}`))));
  });
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const seconds = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
const mib = (bytes: number): string => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

async function main(): Promise<void> {
  const runs = positiveIntegerEnv('BENCH_RUNS', 3);
  const jobs = availableParallelism();
  const machine = describeMachine();
  const work = tempDir('ct-ops-bench-bundle-');
  try {
    execFileSync('zip', ['-v'], { stdio: 'ignore' });
    const dataDir = join(work, 'data');
    mkdirSync(dataDir, { mode: 0o700 });
    await ensureTlsMaterial(dataDir, ['localhost'], new Date());
    ensureBundleKey(dataDir);
    const release = findRelease(work);
    writeFileSync(join(dataDir, RELEASE_PUBLIC_KEY_FILE), release.releasePub);
    const templates = findTemplates(work);
    const epoch = Math.floor(Date.now() / 1000);
    const build = (target: Target, outDir: string): Promise<BuiltBundle> =>
      buildBundle(parseBundleRequest({ os: target.os, arch: target.arch, address: 'ingest.example:9443', tags: { site: 'bench' }, token: { mode: 'none' }, createdBy: 'bench' }), {
        dataDir, outDir, agentsDir: release.agentsDir, templatesDir: templates.dir, agentVersion: release.version, sourceDateEpoch: epoch,
      });

    // The same files for zip: the bundles' own contents, extracted once.
    progress('preparing the files zip compresses');
    const staged = join(work, 'staged');
    const reference = await Promise.all(ALL_TARGETS.map((target) => build(target, join(work, 'reference'))));
    for (const built of reference) execFileSync('unzip', ['-q', '-o', built.path, '-d', staged]);
    const inputBytes = reference.reduce((sum, built) => sum + built.manifest.files.reduce((files, file) => files + file.size, 0), 0);

    const timings = { bundlerParallel: [] as number[], bundlerSerial: [] as number[], zipParallel: [] as number[], zipSerial: [] as number[] };
    let bundles: BuiltBundle[] = [];
    const zipSizes = new Map<string, number>();
    for (let run = 1; run <= runs; run++) {
      for (const [name, lanes] of [['bundlerParallel', jobs], ['bundlerSerial', 1]] as const) {
        const out = join(work, `out-${name}-${run}`);
        const started = performance.now();
        bundles = await inParallel(ALL_TARGETS, lanes, (target) => build(target, out));
        timings[name].push(performance.now() - started);
        rmSync(out, { recursive: true, force: true });
        progress(`run ${run}: ct-ops-bundle build ×6, ${lanes} at a time: ${seconds(timings[name].at(-1)!)}`);
      }
      for (const [name, lanes] of [['zipParallel', jobs], ['zipSerial', 1]] as const) {
        const out = join(work, `zip-${name}-${run}`);
        mkdirSync(out);
        const started = performance.now();
        await inParallel(ALL_TARGETS, lanes, (target) => runZip(staged, join(out, `${bundleBaseName(release.version, target)}.zip`), bundleBaseName(release.version, target)));
        timings[name].push(performance.now() - started);
        for (const target of ALL_TARGETS) zipSizes.set(bundleBaseName(release.version, target), statSync(join(out, `${bundleBaseName(release.version, target)}.zip`)).size);
        rmSync(out, { recursive: true, force: true });
        progress(`run ${run}: zip -r -6 ×6, ${lanes} at a time: ${seconds(timings[name].at(-1)!)}`);
      }
    }
    const ours = { parallel: median(timings.bundlerParallel), serial: median(timings.bundlerSerial) };
    const theirs = { parallel: median(timings.zipParallel), serial: median(timings.zipSerial) };
    const met = ours.parallel <= theirs.serial;
    const ourBytes = bundles.reduce((sum, built) => sum + built.size, 0);
    const zipBytes = [...zipSizes.values()].reduce((sum, size) => sum + size, 0);

    const lines = [
      '## Bundles: building all six install bundles (`npm run bench:bundle`)',
      '',
      `- Date: ${machine.date}`,
      `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
      `- Executables: ${release.real ? `dist/agents/${release.version} (built by \`npm run build:agents\`, verified against its signed SHA256SUMS)` : `stand-ins (no built release): this machine's node binary, ${mib(statSync(process.execPath).size)}, per target`}; templates: ${templates.real ? 'the repository\'s installers/, systemd/, launchd/, windows/' : 'test stand-ins (repository templates incomplete)'}`,
      `- Input: ${mib(inputBytes)} in ${reference.reduce((sum, built) => sum + built.manifest.files.length + 3, 0)} files over 6 bundles; median of ${runs} runs; deflate level 6 for both; zip run as \`zip -r -6 -q -X\` on the extracted bundle folders`,
      '',
      '| Measure | ct-ops-bundle build | zip -r -6 | ratio (bundle / zip) |',
      '| --- | --- | --- | --- |',
      `| 6 bundles, ${jobs} at a time | ${seconds(ours.parallel)} | ${seconds(theirs.parallel)} | ${(ours.parallel / theirs.parallel).toFixed(2)} |`,
      `| 6 bundles, one at a time | ${seconds(ours.serial)} | ${seconds(theirs.serial)} | ${(ours.serial / theirs.serial).toFixed(2)} |`,
      `| total zip size | ${mib(ourBytes)} | ${mib(zipBytes)} | ${(ourBytes / zipBytes).toFixed(3)} |`,
      ...bundles.map((built) => `| ${built.file} | ${mib(built.size)} | ${mib(zipSizes.get(built.file.replace(/\.zip$/, '')) ?? 0)} | ${(built.size / (zipSizes.get(built.file.replace(/\.zip$/, '')) ?? 1)).toFixed(3)} |`),
      `| target: ${jobs} at a time not slower than zip one at a time | ${met ? 'MET' : 'NOT MET'} | | ${(ours.parallel / theirs.serial).toFixed(2)} |`,
      '',
      'ct-ops-bundle does more than zip: it verifies each executable against the signed release checksums (SHA-256),',
      'hashes every file for SHA256SUMS and the manifest, and signs SHA256SUMS (BLAKE2b-512 + Ed25519).',
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    if (!met) process.exitCode = 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
