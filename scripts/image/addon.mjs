// The better-sqlite3 addon of an image: compiled from the sources better-sqlite3 ships
// (src/, deps/sqlite3) with the node-gyp that npm ships, against the headers of the
// pinned Node base package (--nodedir, so nothing is downloaded), for the image's CPU.
// A clone's node_modules addon is built for the Node that runs npm (20), whose ABI
// differs from the bundled Node 22. The result is cached under
// node_modules/.cache/ct-ops-image/, keyed by everything that makes it differ. Each
// compile starts from a fresh build folder of its own (build-linux-<arch>-<pid>), removed
// when it ends, failed or not; folders a killed build left behind (their process is gone)
// are removed first, so neither a killed nor a concurrent build breaks the next one.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { BuildImageError } from './errors.mjs';

const run = promisify(execFile);

/**
 * The compilers per image CPU. arm64 is cross-compiled (Debian's g++-aarch64-linux-gnu)
 * and checked under qemu-aarch64 with the cross toolchain's libraries as its root.
 */
const TOOLCHAINS = Object.freeze({
  x64: { cc: 'gcc', cxx: 'g++', runPrefix: [] },
  arm64: { cc: 'aarch64-linux-gnu-gcc', cxx: 'aarch64-linux-gnu-g++', runPrefix: ['qemu-aarch64', '-L', '/usr/aarch64-linux-gnu'] },
});

/** npm's own node-gyp: $(npm prefix -g)/lib/node_modules/npm/node_modules/node-gyp, else next to the npm-cli.js of this Node. */
async function findNodeGyp() {
  const candidates = [];
  try {
    const { stdout } = await run('npm', ['prefix', '-g']);
    candidates.push(join(stdout.trim(), 'lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  } catch {
    // npm missing from PATH: the candidate next to this Node's installation still may exist
  }
  candidates.push(join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js'));
  const found = candidates.find((path) => existsSync(path));
  if (!found) throw new BuildImageError('ERR_TOOL_MISSING', `node-gyp not found (looked at ${candidates.join(', ')}); it ships with npm`);
  return found;
}

/**
 * The environment without npm's exported configuration (npm_config_*). node-gyp reads those
 * variables AFTER its command line and lets them win (node-gyp lib/node-gyp.js, "inheriting config
 * env variables from npm"), so under `npm test` or `npm run build:image` a machine-wide
 * `nodedir`, `target`, `arch` or `dist-url` in .npmrc would silently build for the Node that runs
 * npm instead of the image's (seen: npm's nodedir=/usr gave an addon for Node 20's ABI).
 */
function withoutNpmConfig(env) {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !/^npm_config_/i.test(name)));
}

/** Whether a process with this id still runs (signal 0 checks without sending anything). */
function processRuns(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Removes the build-linux-<arch>-<pid> folders in cacheDir whose build process is gone (killed). */
function removeAbandonedBuilds(cacheDir) {
  for (const name of existsSync(cacheDir) ? readdirSync(cacheDir) : []) {
    const pid = /^build-linux-(?:x64|arm64)-(\d+)$/.exec(name)?.[1];
    if (pid && !processRuns(Number(pid))) rmSync(join(cacheDir, name), { recursive: true, force: true });
  }
}

async function compilerVersion(compiler) {
  try {
    const { stdout } = await run(compiler, ['--version']);
    return stdout.split('\n')[0].trim();
  } catch (error) {
    throw new BuildImageError('ERR_TOOL_MISSING', `${compiler} is not installed (${error.code ?? error.message})`, { cause: error });
  }
}

/**
 * The path of better_sqlite3.node for arch, built against nodeDir (an extracted
 * node-linux-<arch> package: include/node/) unless the cache already has it.
 * @param {{ root: string, arch: 'x64' | 'arm64', nodeVersion: string, nodeDir: string, cacheDir: string, step: (what: string) => void }} options
 */
export async function betterSqliteAddon({ root, arch, nodeVersion, nodeDir, cacheDir, step }) {
  const toolchain = TOOLCHAINS[arch];
  const source = join(root, 'node_modules/better-sqlite3');
  const sourceVersion = JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')).version;
  const compiler = await compilerVersion(toolchain.cxx);
  const key = createHash('sha256').update(JSON.stringify([sourceVersion, nodeVersion, arch, compiler])).digest('hex').slice(0, 16);
  const cached = join(cacheDir, `better_sqlite3-${sourceVersion}-node${nodeVersion}-linux-${arch}-${key}.node`);
  removeAbandonedBuilds(cacheDir);
  if (existsSync(cached)) {
    step(`better-sqlite3 ${sourceVersion} addon from the cache`);
    return cached;
  }

  step(`compiling the better-sqlite3 ${sourceVersion} addon for Node ${nodeVersion} (${compiler})`);
  const nodeGyp = await findNodeGyp();
  // Built inside the cache folder. The Release build embeds no path: two builds in different
  // folders, against headers in different folders, gave the same bytes, so clearing the cache
  // changes no image.
  const work = join(cacheDir, `build-linux-${arch}-${process.pid}`);
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  try {
    for (const part of ['binding.gyp', 'package.json', 'src', 'deps']) cpSync(join(source, part), join(work, part), { recursive: true });
    try {
      await run(process.execPath, [nodeGyp, 'rebuild', '--release', `--nodedir=${nodeDir}`, `--arch=${arch}`, '--jobs=2'], {
        cwd: work,
        env: { ...withoutNpmConfig(process.env), CC: toolchain.cc, CXX: toolchain.cxx, npm_config_offline: 'true' },
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (error) {
      throw new BuildImageError('ERR_TOOL_FAILED', `node-gyp could not build better-sqlite3 for linux-${arch}: ${String(error.stderr ?? error.message).trim().split('\n').slice(-8).join('\n')}`, { cause: error });
    }
    const partial = `${cached}.partial-${process.pid}`;
    copyFileSync(join(work, 'build/Release/better_sqlite3.node'), partial);
    renameSync(partial, cached);
    return cached;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Opens an in-memory database with the addon under the image's own Node (x64 directly,
 * arm64 under qemu-aarch64) and returns SQLite's version; throws ERR_ADDON_DOES_NOT_LOAD
 * otherwise. better-sqlite3's JavaScript comes from node_modules: the bundle holds the same.
 */
export async function checkAddonLoads({ root, arch, node, addon }) {
  const toolchain = TOOLCHAINS[arch];
  const script = "const Database = require(process.argv[1]); const db = new Database(':memory:', { nativeBinding: process.argv[2] }); process.stdout.write(db.prepare('select sqlite_version() as v').get().v);";
  const [command, ...prefix] = [...toolchain.runPrefix, node];
  try {
    const { stdout } = await run(command, [...prefix, '-e', script, join(root, 'node_modules/better-sqlite3'), addon], { timeout: 120_000 });
    return stdout.trim();
  } catch (error) {
    if (error.code === 'ENOENT') throw new BuildImageError('ERR_TOOL_MISSING', `${command} is not installed: the linux-${arch} addon cannot be checked`, { cause: error });
    // Node prints the reason (an ABI or glibc mismatch) in its Error line, not in the last lines.
    const reason = String(error.stderr ?? error.message).split('\n').filter((line) => /Error|NODE_MODULE_VERSION|GLIBC|cannot open/.test(line)).slice(0, 4).join('\n');
    throw new BuildImageError('ERR_ADDON_DOES_NOT_LOAD', `the linux-${arch} better-sqlite3 addon ${addon} does not load under Node of the image (a cached addon: delete it to rebuild): ${reason}`, { cause: error });
  }
}
