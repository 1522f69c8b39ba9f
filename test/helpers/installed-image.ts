import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatSha256Sums, sha256File } from '../../bundler/lib/sha256sums.ts';
import type { RunResult, TestRoot } from './chroot.ts';
import type { BuiltImage } from './image.ts';
import type { BootedSystem } from './nspawn.ts';
import { httpsJson } from './https.ts';
import { freePort } from './ports.ts';

/*
 * The appliance image installed by its own install.sh in a booted Debian root (test/helpers/nspawn.ts):
 * shared by test/image-install.test.ts and test/image-upgrade.test.ts. The container shares the
 * host's network, so the appliance gets ports free on this machine instead of 8443/9443.
 */

/** The data directory install.sh makes by default, inside the root. */
export const INSTALLED_DATA_DIR = '/var/lib/ct-ops/appliance';

/** Two TCP ports free on loopback now: the installed appliance's admin HTTPS and gRPC ports. */
export async function freePorts(): Promise<{ http: number; grpc: number }> {
  const http = await freePort();
  let grpc = await freePort();
  while (grpc === http) grpc = await freePort();
  return { http, grpc };
}

/** Extracts the image tarball into the root's /media/<name>/ (as an admin would from removable media); returns the top folder's path inside the root. */
export function imageOnMedia(root: TestRoot, image: BuiltImage, name: string): string {
  const dir = root.at(join('media', name));
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-xzf', image.tarball, '-C', dir]);
  return `/media/${name}/${image.topName}`;
}

/** Every file named node or nodejs under the root's program folders (host paths relative to the root). */
export function nodeExecutables(root: TestRoot): string[] {
  const found = execFileSync('find', ['usr', 'opt', 'etc/alternatives', '(', '-name', 'node', '-o', '-name', 'nodejs', ')', '!', '-type', 'd'], { cwd: root.path, encoding: 'utf8' });
  return found.split('\n').filter(Boolean).sort();
}

/** The minisign public key line ("RW…") of the release key the image was signed with (the development key in a clone). */
export function releaseKeyLine(image: BuiltImage): string {
  return readFileSync(join(image.dir, 'release.pub'), 'utf8').trim().split('\n').at(-1)!;
}

/** Runs the image's install.sh inside the booted root. */
export async function runInstaller(system: BootedSystem, topInside: string, args: readonly string[]): Promise<RunResult> {
  return system.exec([`${topInside}/install.sh`, ...args], { timeoutMs: 300_000 });
}

/** GET /healthz of the installed appliance from the host, trusting the CA in its data directory. */
export async function installedHealthz(root: TestRoot, httpPort: number): Promise<{ status: number; body: { status: string; version: string } }> {
  return httpsJson(httpPort, readFileSync(root.at(`${INSTALLED_DATA_DIR}/ca.crt`), 'utf8'), 'GET', '/healthz');
}

/**
 * Another version of an image already on the root's media: a copy of the folder at `topInside`
 * named and versioned `version` (package.json), changed by `change` (given the copy's host path),
 * with SHA256SUMS written afresh and no signature (install.sh then runs without --release-key).
 * Returns the copy's path inside the root.
 */
export async function otherVersionOnMedia(root: TestRoot, topInside: string, version: string, change: (hostDir: string) => void = () => {}): Promise<string> {
  const inside = `/media/${version}/ct-ops-appliance-${version}-linux-x64`;
  const dir = root.at(inside);
  mkdirSync(root.at(`media/${version}`), { recursive: true });
  cpSync(root.at(topInside), dir, { recursive: true });
  const packageJson = join(dir, 'package.json');
  writeFileSync(packageJson, `${JSON.stringify({ ...(JSON.parse(readFileSync(packageJson, 'utf8')) as object), version }, null, 2)}\n`);
  change(dir);
  rmSync(join(dir, 'SHA256SUMS.minisig'));
  await rewriteSha256Sums(dir);
  return inside;
}

/** Writes SHA256SUMS of the image folder `dir` (a host path) afresh over every other file in it but SHA256SUMS.minisig, which is left as it is. */
export async function rewriteSha256Sums(dir: string): Promise<void> {
  const names = (readdirSync(dir, { recursive: true }) as string[]).filter((name) => statSync(join(dir, name)).isFile() && name !== 'SHA256SUMS' && name !== 'SHA256SUMS.minisig');
  writeFileSync(join(dir, 'SHA256SUMS'), formatSha256Sums(await Promise.all(names.map(async (name) => ({ name, sha256: await sha256File(join(dir, name)) })))));
}
