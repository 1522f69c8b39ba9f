import { lstat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseSha256Sums, sha256File } from '../../bundler/lib/sha256sums.ts';
import { ALL_TARGETS, releaseExecutableName } from '../../bundler/lib/targets.ts';
import { SERVICE_WRAPPER_NAME } from '../../bundler/build/inputs.ts';
import { CtOpsError } from '../../common/errors.ts';
import { keyIdHex, verifySignature, type PublicKey } from '../../common/minisign.ts';
import type { ReleaseFile } from '../model/release.ts';
import { MAX_RELEASE_FILE_BYTES, MAX_SIGNATURE_BYTES, MAX_SUMS_BYTES, RELEASE_SIGNATURE_FILE, RELEASE_SUMS_FILE, signedReleaseVersion } from '../../common/release-version.ts';


/** The agent executables a release may hold (ct-ops-agent-<os>-<arch>[.exe], bundler/lib/targets.ts). */
export const RELEASE_EXECUTABLES: ReadonlySet<string> = new Set(ALL_TARGETS.map(releaseExecutableName));

/** Every file name a release may list: the executables and the Windows service wrapper (WinSW). */
const RELEASE_FILE_NAMES: ReadonlySet<string> = new Set([...RELEASE_EXECUTABLES, SERVICE_WRAPPER_NAME]);

/** A release whose signature and files were checked. */
export interface CheckedRelease {
  readonly version: string;
  /** Hex id of the trusted key that signed it. */
  readonly keyId: string;
  readonly trustedComment: string;
  /** Every file SHA256SUMS lists, sorted by name. */
  readonly files: readonly ReleaseFile[];
}

/** Whether `name` may be a file of a release folder (a listed release file or one of the two signature files). */
export function isReleaseFileName(name: string): boolean {
  return RELEASE_FILE_NAMES.has(name) || name === RELEASE_SUMS_FILE || name === RELEASE_SIGNATURE_FILE;
}

/**
 * Checks the agent release in folder `dir` as the root helper checks an update, before anything of
 * it is trusted: SHA256SUMS.minisig is a valid minisign signature (prehashed, global signature
 * included) of SHA256SUMS by one of `trustedKeys`; its trusted comment names a MAJOR.MINOR.PATCH
 * version; SHA256SUMS lists only release file names, at least one agent executable; and every file
 * it lists is a regular file in `dir` of at most MAX_RELEASE_FILE_BYTES whose SHA-256 matches. Files
 * in `dir` it does not list are not looked at. Throws ERR_RELEASE_UNTRUSTED (signature, key, hash)
 * or ERR_RELEASE_INVALID (layout, version).
 */
export async function checkRelease(dir: string, trustedKeys: readonly PublicKey[]): Promise<CheckedRelease> {
  const sums = await readSmallFile(dir, RELEASE_SUMS_FILE, MAX_SUMS_BYTES);
  const signature = (await readSmallFile(dir, RELEASE_SIGNATURE_FILE, MAX_SIGNATURE_BYTES)).toString('utf8');
  const { trustedComment, keyId } = verifiedBy(signature, sums, trustedKeys);
  const version = signedReleaseVersion(trustedComment);
  if (version === undefined) throw new CtOpsError('ERR_RELEASE_INVALID', `the signed comment of ${RELEASE_SIGNATURE_FILE} names no MAJOR.MINOR.PATCH agent version: ${JSON.stringify(trustedComment)}`);
  const { digests, malformed } = parseSha256Sums(sums.toString('utf8'));
  if (malformed.length > 0) throw new CtOpsError('ERR_RELEASE_INVALID', `${RELEASE_SUMS_FILE} has lines that are not "<sha256>  <name>": ${JSON.stringify(malformed.slice(0, 3))}`);
  const unknown = [...digests.keys()].filter((name) => !RELEASE_FILE_NAMES.has(name));
  if (unknown.length > 0) throw new CtOpsError('ERR_RELEASE_INVALID', `${RELEASE_SUMS_FILE} lists files no agent release has: ${unknown.join(', ')}`);
  if (![...digests.keys()].some((name) => RELEASE_EXECUTABLES.has(name))) throw new CtOpsError('ERR_RELEASE_INVALID', `${RELEASE_SUMS_FILE} lists no agent executable`);
  const files: ReleaseFile[] = [];
  for (const [name, expected] of [...digests].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const size = await regularFileSize(dir, name, MAX_RELEASE_FILE_BYTES);
    const sha256 = await sha256File(join(dir, name));
    if (sha256 !== expected) throw new CtOpsError('ERR_RELEASE_UNTRUSTED', `${name} does not match the signed ${RELEASE_SUMS_FILE} (sha256 ${sha256}, signed ${expected})`, { file: name });
    files.push({ name, sha256, size });
  }
  return { version, keyId, trustedComment, files };
}

/** The trusted comment and key id of the first of `keys` whose signature `signature` over `sums` verifies; ERR_RELEASE_UNTRUSTED when none does. */
function verifiedBy(signature: string, sums: Buffer, keys: readonly PublicKey[]): { trustedComment: string; keyId: string } {
  if (keys.length === 0) throw new CtOpsError('ERR_RELEASE_UNTRUSTED', 'this appliance trusts no release key (set release_public_key_file), so no release can be imported');
  const failures: string[] = [];
  for (const key of keys) {
    try {
      return { trustedComment: verifySignature(signature, { data: sums }, key), keyId: keyIdHex(key.keyId) };
    } catch (error) {
      failures.push((error as Error).message);
    }
  }
  throw new CtOpsError('ERR_RELEASE_UNTRUSTED', `${RELEASE_SIGNATURE_FILE} is not a valid signature of ${RELEASE_SUMS_FILE} by a release key this appliance trusts (${keys.map((key) => keyIdHex(key.keyId)).join(', ')}): ${failures.join('; ')}`);
}

/** The size of `dir`/`name` when it is a regular file (not a link) of at most `maxBytes`; ERR_RELEASE_INVALID otherwise. */
async function regularFileSize(dir: string, name: string, maxBytes: number): Promise<number> {
  const stats = await lstat(join(dir, name)).catch(() => undefined);
  if (stats === undefined || !stats.isFile()) throw new CtOpsError('ERR_RELEASE_INVALID', `the release has no regular file ${name}`, { file: name });
  if (stats.size > maxBytes) throw new CtOpsError('ERR_RELEASE_INVALID', `${name} is ${stats.size} bytes, more than a release file may have (${maxBytes})`, { file: name });
  return stats.size;
}

async function readSmallFile(dir: string, name: string, maxBytes: number): Promise<Buffer> {
  await regularFileSize(dir, name, maxBytes);
  return readFile(join(dir, name));
}
