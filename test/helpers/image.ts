import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './processes.ts';

/*
 * The appliance image (npm run build:image) for tests: built at most once per test process and
 * only when dist/image/<version>/ lacks it or anything it is made from changed since. Every test
 * that needs an image takes it from here, never builds one its own way.
 */

const run = promisify(execFile);

export type ImageArch = 'linux-x64' | 'linux-arm64';

export interface BuiltImage {
  version: string;
  /** dist/image/<version>/: the tarballs, the outer SHA256SUMS (+ .minisig) and release.pub. */
  dir: string;
  tarball: string;
  /** The one top folder of the tarball: ct-ops-appliance-<version>-<arch>. */
  topName: string;
  /** The OCI archive next to the tarball, once scripts/image/oci.mjs writes one. */
  ociArchive?: string;
}

/** What an image is made of: a change to any of these makes the cached image stale. */
const INPUTS = ['appliance', 'agent', 'bundler', 'common', 'proto', 'image', 'scripts', 'installers', 'systemd', 'launchd', 'windows', 'package.json', 'package-lock.json'];

function newestMtimeMs(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtimeMs(join(path, name)));
  return newest;
}

const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const builds = new Map<ImageArch, Promise<BuiltImage>>();

function describeImage(arch: ImageArch): BuiltImage {
  const dir = join(REPO_ROOT, 'dist', 'image', version);
  const topName = `ct-ops-appliance-${version}-${arch}`;
  const ociArchive = join(dir, `${topName}.oci.tar`);
  return { version, dir, tarball: join(dir, `${topName}.tar.gz`), topName, ...(existsSync(ociArchive) ? { ociArchive } : {}) };
}

function isFresh(image: BuiltImage): boolean {
  const signedSums = join(image.dir, 'SHA256SUMS.minisig');
  if (!existsSync(image.tarball) || !existsSync(signedSums)) return false;
  const built = statSync(image.tarball).mtimeMs;
  // The outer sums are written last: older than the tarball, the build stopped before the OCI archive and the sums.
  if (statSync(signedSums).mtimeMs < built) return false;
  return INPUTS.every((input) => !existsSync(join(REPO_ROOT, input)) || newestMtimeMs(join(REPO_ROOT, input)) < built);
}

/**
 * The image for arch in dist/image/<version>/, built first (`npm run build:image -- --target
 * arch`, minutes the first time: the better-sqlite3 addon compiles; later ones reuse its cache)
 * when missing or stale.
 */
export function builtImage(arch: ImageArch = 'linux-x64'): Promise<BuiltImage> {
  let build = builds.get(arch);
  if (!build) {
    build = (async () => {
      if (!isFresh(describeImage(arch))) {
        await run(process.execPath, ['--import', 'tsx', join(REPO_ROOT, 'scripts/build-image.mjs'), '--target', arch, '--quiet'], { cwd: REPO_ROOT, timeout: 30 * 60_000, maxBuffer: 16 * 1024 * 1024 });
      }
      return describeImage(arch);
    })();
    builds.set(arch, build);
  }
  return build;
}

/** Extracts the image tarball with tar into dir (the caller's, which it removes); returns the top folder's path. */
export async function extractedImage(image: BuiltImage, dir: string): Promise<string> {
  await run('tar', ['-xzf', image.tarball, '-C', dir]);
  return join(dir, image.topName);
}
