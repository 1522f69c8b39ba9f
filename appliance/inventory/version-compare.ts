/**
 * Orders package version strings the way dpkg does (deb-version(7)): epoch first, then the
 * upstream version, then the revision (after the last `-`). Within each part, runs of
 * non-digits compare character by character with `~` before everything (even the end of the
 * string), letters before other characters; runs of digits compare as numbers. rpm, brew and
 * Windows registry versions go through the same order, which gives the natural result for
 * dotted numbers (1.10 > 1.9) without guessing which package manager wrote them.
 *
 * Like dpkg, versions that differ only in spelling compare equal (1.0 = 1.00 = 0:1.0 = 1.0-0).
 */
export function compareVersions(a: string, b: string): number {
  const left = splitVersion(a);
  const right = splitVersion(b);
  return sign(compareDigitRuns(left.epoch, right.epoch) || compareFragment(left.upstream, right.upstream) || compareFragment(left.revision, right.revision));
}

interface VersionParts {
  epoch: string;
  upstream: string;
  revision: string;
}

/**
 * Epoch before the first `:` when it is all digits (anything else is not an epoch and stays in
 * the upstream version), revision after the last `-` of the rest.
 */
function splitVersion(version: string): VersionParts {
  const colon = version.indexOf(':');
  const hasEpoch = colon > 0 && /^[0-9]+$/.test(version.slice(0, colon));
  const rest = hasEpoch ? version.slice(colon + 1) : version;
  const hyphen = rest.lastIndexOf('-');
  return {
    epoch: hasEpoch ? version.slice(0, colon) : '0',
    upstream: hyphen < 0 ? rest : rest.slice(0, hyphen),
    revision: hyphen < 0 ? '' : rest.slice(hyphen + 1),
  };
}

const isDigit = (code: number): boolean => code >= 0x30 && code <= 0x39;
const isLetter = (code: number): boolean => (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a);

/** dpkg's weight of one character of a non-digit run; NaN (past the end) weighs 0. */
function weight(code: number): number {
  if (Number.isNaN(code) || isDigit(code)) return 0;
  if (isLetter(code)) return code;
  if (code === 0x7e) return -1; // '~'
  return code + 256;
}

/** dpkg's verrevcmp: alternating non-digit and digit runs, compared run by run. */
function compareFragment(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    while ((i < a.length && !isDigit(a.charCodeAt(i))) || (j < b.length && !isDigit(b.charCodeAt(j)))) {
      const difference = weight(a.charCodeAt(i)) - weight(b.charCodeAt(j));
      if (difference !== 0) return difference;
      i += 1;
      j += 1;
    }
    const digitsA = digitRunEnd(a, i);
    const digitsB = digitRunEnd(b, j);
    const difference = compareDigitRuns(a.slice(i, digitsA), b.slice(j, digitsB));
    if (difference !== 0) return difference;
    i = digitsA;
    j = digitsB;
  }
  return 0;
}

function digitRunEnd(text: string, from: number): number {
  let end = from;
  while (end < text.length && isDigit(text.charCodeAt(end))) end += 1;
  return end;
}

/** Two runs of digits as numbers of any length: no overflow for 20-digit snapshot dates. */
function compareDigitRuns(a: string, b: string): number {
  const left = a.replace(/^0+/, '');
  const right = b.replace(/^0+/, '');
  if (left.length !== right.length) return left.length - right.length;
  return left < right ? -1 : left > right ? 1 : 0;
}

const sign = (value: number): number => (value < 0 ? -1 : value > 0 ? 1 : 0);
