import { escapeForTerminal, hasUnsafeSingleLineText } from './agent-text.ts';

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
 * of a tool's output that holds no record it can read.
 */
export type SkipReason = 'name_missing' | `${PackageTextField}_too_long` | `${PackageTextField}_unsafe_text` | 'install_date_invalid' | 'invalid_utf8' | 'unparsable';

/** The fields the rule reads, as both the agent's records and the wire's packages have them. */
export interface PackageFields {
  readonly name: string;
  readonly version: string;
  readonly source: string;
  readonly architecture: string;
  readonly publisher: string;
  readonly install_date_unix: number;
}

const TEXT_FIELDS = Object.keys(PACKAGE_FIELD_LIMITS) as PackageTextField[];

/** Why the record cannot be stored, or undefined when it can. */
export function packageSkipReason(record: PackageFields): SkipReason | undefined {
  if (record.name === '') return 'name_missing';
  for (const field of TEXT_FIELDS) {
    const value = record[field];
    if (value.length > PACKAGE_FIELD_LIMITS[field]) return `${field}_too_long`;
    if (hasUnsafeSingleLineText(value)) return `${field}_unsafe_text`;
  }
  const date = record.install_date_unix;
  if (!Number.isSafeInteger(date) || date < 0 || date > MAX_INSTALL_DATE_UNIX) return 'install_date_invalid';
  return undefined;
}

/** Skipped records of one reason: how many, and the first one's name as a terminal-safe excerpt. */
export interface SkippedPackages {
  reason: SkipReason;
  count: number;
  example: string;
}

const EXAMPLE_CHARS = 80;

/**
 * Counts skipped records by reason, keeping the first example of each. The example is the record's
 * name (or the line a parser could not read) escaped for a terminal and cut to 80 characters, so
 * one hostile record costs a few bytes in a log or a scan record.
 */
export class SkipTally {
  readonly #byReason = new Map<SkipReason, SkippedPackages>();

  add(reason: SkipReason, example: string, count = 1): void {
    const entry = this.#byReason.get(reason);
    if (entry) entry.count += count;
    else this.#byReason.set(reason, { reason, count, example: escapeForTerminal(example.slice(0, EXAMPLE_CHARS)) });
  }

  addAll(entries: readonly SkippedPackages[]): this {
    for (const entry of entries) this.add(entry.reason, entry.example, entry.count);
    return this;
  }

  get total(): number {
    let total = 0;
    for (const entry of this.#byReason.values()) total += entry.count;
    return total;
  }

  /** The counts in reason order. */
  list(): SkippedPackages[] {
    return [...this.#byReason.values()].sort((a, b) => a.reason.localeCompare(b.reason)).map((entry) => ({ ...entry }));
  }
}

/** The counts as text, "name_missing 1, version_too_long 2"; '' when none. */
export function describeSkipped(entries: readonly { readonly reason: string; readonly count: number }[]): string {
  return entries.map((entry) => `${entry.reason} ${entry.count}`).join(', ');
}
