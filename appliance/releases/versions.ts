/**
 * Agent release versions: MAJOR.MINOR.PATCH in decimal without leading zeros, each number at most
 * nine digits (the form release signatures carry, release-check.ts, and the root helper accepts).
 * RELEASE_VERSION_SOURCE is that pattern unanchored, for other patterns (a signed comment, a route's
 * JSON schema).
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
