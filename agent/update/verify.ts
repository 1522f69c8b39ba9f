import { parseSha256Sums, sha256File } from '../../bundler/lib/sha256sums.ts';
import { CtOpsError } from '../../common/errors.ts';
import { verifySignature, type PublicKey } from '../../common/minisign.ts';
import type { UpdateOffer__Output } from '../../common/proto.ts';
import { compareVersions, isReleaseVersion, MAX_RELEASE_FILE_BYTES, signedReleaseVersion } from '../../common/release-version.ts';

/** This agent, as an offer must match it: its version and the release executable of its os/arch. */
export interface RunningAgent {
  readonly version: string;
  /** ct-ops-agent-<os>-<arch>[.exe] (bundler/lib/targets.ts releaseExecutableName). */
  readonly executableName: string;
}

/**
 * Checks an offer before anything is downloaded (issue 12, "Download and verification"): a
 * MAJOR.MINOR.PATCH version strictly greater than the running one, this host's executable, a size
 * of at most MAX_RELEASE_FILE_BYTES, a SHA-256 in hex, and a release key to verify with. Throws
 * ERR_UPDATE_NOT_NEWER, ERR_UPDATE_WRONG_TARGET, ERR_UPDATE_TOO_LARGE, ERR_UPDATE_NO_RELEASE_KEY or
 * ERR_INVALID_ARGUMENT (a malformed offer).
 */
export function checkOffer(offer: UpdateOffer__Output, running: RunningAgent, releaseKey: PublicKey | undefined): void {
  if (!isReleaseVersion(offer.version)) throw new CtOpsError('ERR_INVALID_ARGUMENT', `the offered version ${JSON.stringify(offer.version.slice(0, 32))} is not MAJOR.MINOR.PATCH`);
  if (!isReleaseVersion(running.version) || compareVersions(offer.version, running.version) <= 0) {
    throw new CtOpsError('ERR_UPDATE_NOT_NEWER', `the offered version ${offer.version} is not newer than this agent's ${running.version}`, { version: offer.version });
  }
  if (offer.file_name !== running.executableName) throw new CtOpsError('ERR_UPDATE_WRONG_TARGET', `the offer is for ${JSON.stringify(offer.file_name.slice(0, 64))}, this host runs ${running.executableName}`, { version: offer.version });
  if (!Number.isSafeInteger(offer.size) || offer.size <= 0 || offer.size > MAX_RELEASE_FILE_BYTES) {
    throw new CtOpsError('ERR_UPDATE_TOO_LARGE', `the offered executable is ${offer.size} bytes; a release file has at most ${MAX_RELEASE_FILE_BYTES}`, { version: offer.version });
  }
  if (!/^[0-9a-f]{64}$/.test(offer.sha256)) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'the offered SHA-256 is not 64 lower-case hex digits');
  if (releaseKey === undefined) throw new CtOpsError('ERR_UPDATE_NO_RELEASE_KEY', 'no release key is pinned in agent.toml ([update] release_public_key): no update can be verified');
}

/**
 * Checks the downloaded files before anything is handed on: the executable's SHA-256 is the offered
 * one; SHA256SUMS.minisig is a valid signature of SHA256SUMS by `releaseKey` (global signature
 * included: common/minisign.ts verifySignature), naming the offered version; SHA256SUMS lists the
 * executable with that same SHA-256. Throws ERR_UPDATE_HASH_MISMATCH or ERR_UPDATE_SIGNATURE_INVALID.
 */
export async function checkDownloaded(files: { executable: string; sums: Buffer; signature: Buffer }, offer: UpdateOffer__Output, releaseKey: PublicKey): Promise<void> {
  const sha256 = await sha256File(files.executable);
  if (sha256 !== offer.sha256) throw new CtOpsError('ERR_UPDATE_HASH_MISMATCH', `the downloaded ${offer.file_name} has SHA-256 ${sha256}, the offer says ${offer.sha256}`, { version: offer.version });
  const signed = signedRelease(files.sums, files.signature, releaseKey);
  if (signed.version !== offer.version) {
    throw new CtOpsError('ERR_UPDATE_SIGNATURE_INVALID', `the signed release is ${signed.version ?? 'of no version'}, the offer says ${offer.version}`, { version: offer.version });
  }
  if (signed.digests.get(offer.file_name) !== sha256) {
    throw new CtOpsError('ERR_UPDATE_HASH_MISMATCH', `the signed SHA256SUMS does not list ${offer.file_name} with SHA-256 ${sha256}`, { version: offer.version });
  }
}

/**
 * What a release's SHA256SUMS says once `signature` (SHA256SUMS.minisig) proves it was signed by
 * `releaseKey` (global signature included: common/minisign.ts verifySignature): the version its
 * signed comment names (undefined when none) and the SHA-256 of each listed file. Throws
 * ERR_UPDATE_SIGNATURE_INVALID.
 */
export function signedRelease(sums: Buffer, signature: Buffer, releaseKey: PublicKey): { version: string | undefined; digests: ReadonlyMap<string, string> } {
  let trustedComment: string;
  try {
    trustedComment = verifySignature(signature.toString('utf8'), { data: sums }, releaseKey);
  } catch (cause) {
    throw new CtOpsError('ERR_UPDATE_SIGNATURE_INVALID', `the release's SHA256SUMS is not signed by the pinned release key: ${(cause as Error).message}`, {}, { cause });
  }
  return { version: signedReleaseVersion(trustedComment), digests: parseSha256Sums(sums.toString('utf8')).digests };
}
