/**
 * Every identifier kind of the product, its format defined once next to its generator: a prefix
 * naming what it identifies, an underscore, then ID_HEX_DIGITS lowercase hex digits (80 random bits; for
 * hosts the time in ms then 32 random bits; or the start of a SHA-256 for a reproducible bundle id). The
 * appliance makes host, organisation, token, task, admin and bundle ids; the agent makes scan ids. Entry points that take an id from
 * outside (HTTP params, a TaskUpdate, an inventory chunk, `report-task --task-id`, the uninstaller's
 * argument) test it with `idPattern` / `idPatternSource`, so they accept exactly what is generated.
 */
import { randomBytes } from 'node:crypto';

/** The prefix of each id kind. */
export const ID_PREFIXES = {
  host: 'hst',
  organisation: 'org',
  enrolmentToken: 'etk',
  task: 'tsk',
  adminUser: 'adm',
  adminApiToken: 'akey',
  bundle: 'bnd',
  scan: 'scn',
  applianceInstance: 'ins',
  rollout: 'rol',
} as const;

export type IdPrefix = (typeof ID_PREFIXES)[keyof typeof ID_PREFIXES];

/** Lowercase hex digits after the prefix: 10 random bytes. */
const ID_HEX_DIGITS = 20;

/** A new random id of the kind `prefix` names, such as hst_0f3a… */
export function newId(prefix: IdPrefix): string {
  return `${prefix}_${randomBytes(ID_HEX_DIGITS / 2).toString('hex')}`;
}

/** Hex digits of a time-ordered id that hold its milliseconds since the epoch (48 bits: past the year 10,000). */
const TIME_HEX_DIGITS = 12;

/**
 * A new id that sorts after every id made in an earlier millisecond: `now` (ms since the epoch) in its
 * first TIME_HEX_DIGITS digits, 32 random bits after, so it has the format of newId's. For hosts
 * (decisions.md 156): the name index and the package table are keyed by host id first, and a new host's
 * first scan then lands at the end of each key range it touches instead of at random places in it.
 */
export function newTimeOrderedId(prefix: IdPrefix, now: number): string {
  if (!Number.isSafeInteger(now) || now < 0 || now >= 16 ** TIME_HEX_DIGITS) throw new TypeError('newTimeOrderedId needs a time in whole milliseconds, 0 to 2^48 - 1');
  return `${prefix}_${now.toString(16).padStart(TIME_HEX_DIGITS, '0')}${randomBytes((ID_HEX_DIGITS - TIME_HEX_DIGITS) / 2).toString('hex')}`;
}

/** An id derived from a digest (hex), for ids that must repeat for the same inputs (reproducible bundles). */
export function derivedId(prefix: IdPrefix, digestHex: string): string {
  const digits = digestHex.slice(0, ID_HEX_DIGITS);
  if (!/^[0-9a-f]+$/.test(digits) || digits.length !== ID_HEX_DIGITS) throw new TypeError(`derivedId needs ${ID_HEX_DIGITS} lowercase hex digits`);
  return `${prefix}_${digits}`;
}

/** The id format as a JSON-schema `pattern` (anchored), for HTTP route schemas. */
export function idPatternSource(prefix: IdPrefix): string {
  return `^${prefix}_[0-9a-f]{${ID_HEX_DIGITS}}$`;
}

/** The id format as a RegExp, for entry points that are not JSON schemas. */
export function idPattern(prefix: IdPrefix): RegExp {
  return new RegExp(idPatternSource(prefix));
}

/**
 * Scan ids the appliance accepts in an inventory chunk. The agent names its scans (newId('scn'));
 * the appliance keys them opaquely per host, so it takes any id of this shape (UUIDs, ULIDs), which
 * every generated scan id is: letters, digits and `_.:-`, 8–128 characters, no leading punctuation.
 */
export const ACCEPTED_SCAN_ID = /^[A-Za-z0-9][A-Za-z0-9_.:-]{7,127}$/;
