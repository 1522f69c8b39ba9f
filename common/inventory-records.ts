import { escapeForTerminal, singleLineTextProblem } from './agent-text.ts';

/**
 * The one rule for which package records can be stored, shared by the agent (which skips such
 * records before sending) and the appliance (which skips them on receipt, whatever an agent sends).
 *
 * A record is stored when its name is not empty and each text field is within its cap and free of
 * the characters the agent text rule refuses (common/agent-text.ts). Everything else a package
 * manager can print is a record: an empty version (dpkg status entries, macOS apps without one,
 * Windows programs without DisplayVersion), any architecture text ("", all, noarch, any, i386,
 * armhf, x86_64, universal) and any epoch or suffix. A record that breaks the rule is skipped and
 * counted by reason, never a reason to refuse the scan around it (issue 9, §3).
 */

/** The most UTF-16 code units of each text field; well above what package managers print (docs/operations.md, Limits). */
export const PACKAGE_FIELD_LIMITS = {
  name: 512,
  version: 256,
  source: 64,
  architecture: 64,
  publisher: 512,
} as const;

export type PackageTextField = keyof typeof PACKAGE_FIELD_LIMITS;

/** Later than any plausible install date (year 2200), in Unix seconds. */
export const MAX_INSTALL_DATE_UNIX = 7_258_118_400;

/**
 * Why a record was not stored: a closed set, so counts by reason stay small whatever is sent.
 * `invalid_utf8` is the appliance's: a package whose text is not UTF-8 on the wire (the agent
 * decodes tool output as UTF-8, so its records never are). `unparsable` is the agent's own: a line
 * of a tool's output that holds no record it can read. `duplicate`: a record whose identity (name,
 * version, source, architecture) the scan already listed, the first one kept.
 */
export type SkipReason = 'name_missing' | `${PackageTextField}_too_long` | `${PackageTextField}_unsafe_text` | 'install_date_invalid' | 'invalid_utf8' | 'unparsable' | 'duplicate'
  /** A count a (newer) agent sent under a reason this appliance does not know; the example names it. */
  | 'unknown_reason';

/**
 * Why a record was stored with a field changed: a field that is not part of the package's identity
 * and broke the rule. The install date becomes unknown (the package's own clock was wrong: a date
 * in 2300, or before 1970); a publisher over its cap is cut at a code-point boundary. Counted by
 * reason with the skipped ones, but the record is stored.
 */
export type NormaliseReason = 'install_date_dropped' | 'publisher_truncated';

/** Every reason a scan's counts may carry (SkippedPackages.reason). */
export type RecordReason = SkipReason | NormaliseReason;

export const NORMALISE_REASONS: readonly NormaliseReason[] = ['install_date_dropped', 'publisher_truncated'];

/** Every reason, for checking a reason an agent sends (SoftwareInventoryChunk.skipped). */
export const RECORD_REASONS: ReadonlySet<string> = new Set<RecordReason>([
  'name_missing', 'install_date_invalid', 'invalid_utf8', 'unparsable', 'duplicate', 'unknown_reason', ...NORMALISE_REASONS,
  ...(Object.keys(PACKAGE_FIELD_LIMITS) as PackageTextField[]).flatMap((field) => [`${field}_too_long`, `${field}_unsafe_text`] as const),
]);

/** The fields the rule reads, as both the agent's records and the wire's packages have them. */
export interface PackageFields {
  readonly name: string;
  readonly version: string;
  readonly source: string;
  readonly architecture: string;
  readonly publisher: string;
  readonly install_date_unix: number;
}

/** The fields that name a package (the store's key with the host); a record is never stored with one changed. */
const IDENTITY_FIELDS = ['name', 'version', 'source', 'architecture'] as const satisfies readonly PackageTextField[];

/** Why the record cannot be stored, or undefined when it can (perhaps after storablePackage's changes). */
export function packageSkipReason(record: PackageFields): SkipReason | undefined {
  if (record.name.trim() === '') return 'name_missing';
  for (const field of IDENTITY_FIELDS) {
    const problem = singleLineTextProblem(record[field], PACKAGE_FIELD_LIMITS[field]);
    if (problem !== undefined) return `${field}_${problem}`;
  }
  if (singleLineTextProblem(record.publisher, Number.MAX_SAFE_INTEGER) !== undefined) return 'publisher_unsafe_text';
  if (typeof record.install_date_unix !== 'number' || Number.isNaN(record.install_date_unix)) return 'install_date_invalid';
  return undefined;
}

/**
 * The record as it can be stored, with the reasons it was changed (see NormaliseReason), or the
 * reason it cannot be stored at all (packageSkipReason). A date outside 0..MAX_INSTALL_DATE_UNIX
 * or not whole becomes 0 (unknown).
 */
export function storablePackage<T extends PackageFields>(record: T): { record: T; normalised: NormaliseReason[] } | { skipped: SkipReason } {
  const skipped = packageSkipReason(record);
  if (skipped !== undefined) return { skipped };
  const normalised: NormaliseReason[] = [];
  let stored = record;
  const date = record.install_date_unix;
  if (!Number.isSafeInteger(date) || date < 0 || date > MAX_INSTALL_DATE_UNIX) {
    stored = { ...stored, install_date_unix: 0 };
    normalised.push('install_date_dropped');
  }
  if (record.publisher.length > PACKAGE_FIELD_LIMITS.publisher) {
    stored = { ...stored, publisher: cutAtCodePoint(record.publisher, PACKAGE_FIELD_LIMITS.publisher) };
    normalised.push('publisher_truncated');
  }
  return { record: stored, normalised };
}

/** At most `max` UTF-16 code units of the text, never half a surrogate pair. */
function cutAtCodePoint(text: string, max: number): string {
  const cut = text.slice(0, max);
  return /[\uD800-\uDBFF]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** Skipped records of one reason: how many, and the first one's name as a terminal-safe excerpt. */
export interface SkippedPackages {
  reason: RecordReason;
  count: number;
  example: string;
  /** Counted by the agent before sending (SoftwareInventoryChunk.skipped), not by the appliance on receipt. */
  on_host?: boolean;
}

const EXAMPLE_CHARS = 80;

/**
 * Counts skipped records by reason, keeping the first example of each. The example is the record's
 * name (or the line a parser could not read) escaped for a terminal and cut to 80 characters, so
 * one hostile record costs a few bytes in a log or a scan record.
 */
export class SkipTally {
  readonly #byReason = new Map<string, SkippedPackages>();

  add(reason: RecordReason, example: string, count = 1, onHost = false): void {
    const key = `${reason}${onHost ? '@host' : ''}`;
    const entry = this.#byReason.get(key);
    if (entry) entry.count += count;
    else this.#byReason.set(key, { reason, count, example: escapeForTerminal(example.slice(0, EXAMPLE_CHARS)), ...(onHost ? { on_host: true } : {}) });
  }

  addAll(entries: readonly SkippedPackages[]): this {
    for (const entry of entries) this.add(entry.reason, entry.example, entry.count, entry.on_host === true);
    return this;
  }

  /** The counts in reason order, the host's after the appliance's of the same reason. */
  list(): SkippedPackages[] {
    const order = (entry: SkippedPackages): string => `${entry.reason}${entry.on_host === true ? '@host' : ''}`;
    return [...this.#byReason.values()].sort((a, b) => order(a).localeCompare(order(b))).map((entry) => ({ ...entry }));
  }
}

/**
 * The counts as text, "name_missing 1, version_too_long 2 (on the host)"; the normalised ones (stored,
 * a field changed) after "stored changed:"; '' when none.
 */
export function describeSkipped(entries: readonly { readonly reason: string; readonly count: number; readonly on_host?: boolean }[]): string {
  const text = (entry: (typeof entries)[number]): string => `${entry.reason} ${entry.count}${entry.on_host === true ? ' (on the host)' : ''}`;
  const isNormalised = (entry: (typeof entries)[number]): boolean => (NORMALISE_REASONS as readonly string[]).includes(entry.reason);
  const skipped = entries.filter((entry) => !isNormalised(entry)).map(text).join(', ');
  const changed = entries.filter(isNormalised).map(text).join(', ');
  return [skipped, changed && `stored changed: ${changed}`].filter(Boolean).join('; ');
}
