/*
 * What the appliance's release catalogue and offers, the agent's self-update and the root helper
 * agree on about agent releases: their versions, the version a signature names, the largest file.
 */

/** The largest release file taken anywhere (bytes): an agent executable is about 110 MB; the root helper's own cap (installers/ct-ops-agent-helper.sh). */
export const MAX_RELEASE_FILE_BYTES = 512 * 1024 * 1024;

/** The checksum list every release carries (sha256sum format) and its minisign signature. */
export const RELEASE_SUMS_FILE = 'SHA256SUMS';
export const RELEASE_SIGNATURE_FILE = 'SHA256SUMS.minisig';
/** The largest SHA256SUMS and SHA256SUMS.minisig taken anywhere (bytes): the root helper's own caps. */
export const MAX_SUMS_BYTES = 64 * 1024;
export const MAX_SIGNATURE_BYTES = 4096;

/**
 * A release version: MAJOR.MINOR.PATCH in decimal without leading zeros, each number at most nine
 * digits (one text per version: the catalogue's key). Unanchored, for other patterns (a signed
 * comment, a route's JSON schema).
 */
export const RELEASE_VERSION_SOURCE = '(?:0|[1-9][0-9]{0,8})\\.(?:0|[1-9][0-9]{0,8})\\.(?:0|[1-9][0-9]{0,8})';
const RELEASE_VERSION = new RegExp(`^${RELEASE_VERSION_SOURCE}$`);

export function isReleaseVersion(text: string): boolean {
  return RELEASE_VERSION.test(text);
}

/** Orders two release versions numerically (semver precedence without pre-releases): negative when `a` is older, 0 when equal. */
export function compareVersions(a: string, b: string): number {
  const [left, right] = [a, b].map((version) => version.split('.').map(Number)) as [number[], number[]];
  for (let index = 0; index < 3; index += 1) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/**
 * The version a release signature's trusted comment names, as scripts/agents/release-files.mjs
 * writes it ("ct-ops-agent 1.2.3 executables, signed … by … key …") and the root helper reads it
 * (installers/ct-ops-agent-helper.sh); undefined when it names none. The trusted comment is covered
 * by the signature's global signature, so the version cannot change without the release key.
 */
export function signedReleaseVersion(trustedComment: string): string | undefined {
  return TRUSTED_COMMENT_VERSION.exec(trustedComment)?.[1];
}

const TRUSTED_COMMENT_VERSION = new RegExp(`^ct-ops-agent (${RELEASE_VERSION_SOURCE}) executables, `);
