import { SkipTally, storablePackage, type SkippedPackages } from '../../../common/inventory-records.ts';
import { unparsable } from '../errors.ts';
import type { SoftwarePackage } from '../package.ts';

/** What a parser read from a tool's output: the records it keeps, and those it skipped, by reason. */
export interface ParsedPackages {
  readonly packages: SoftwarePackage[];
  readonly skipped: SkippedPackages[];
}

/** Unreadable lines a list may hold whatever else it holds (a tool's warnings printed on stdout). */
export const UNREADABLE_ALLOWED = 3;

/**
 * A parser's records as it reads them, one at a time. Any record a package manager can print is kept
 * (an empty version, any architecture); one that cannot be stored (common/inventory-records.ts: no
 * name, an identity field over its cap) is skipped and counted, one with an odd install date or an
 * overlong publisher is stored changed and counted, and a line or entry the parser cannot read at
 * all is counted `unparsable`. One odd line never costs the scan. But when nothing at all could be
 * read, or the unreadable lines outnumber every entry read (kept, left out on purpose — removed dpkg
 * packages, Windows updates, frameworks — or skipped) and are more than UNREADABLE_ALLOWED, the tool
 * printed something other than the format we read (an error message, a changed format): that fails
 * the collection (ERR_INVENTORY_COLLECTOR_FAILED), so it is never taken for a short list.
 */
export class PackageRecords {
  readonly #source: string;
  readonly #packages: SoftwarePackage[] = [];
  readonly #skipped = new SkipTally();
  #read = 0;
  #unreadable = 0;
  #firstUnreadable: { at: number; text: string } | undefined;

  constructor(source: string) {
    this.#source = source;
  }

  /** Keeps the record (changed where it must be), or counts it skipped when it cannot be stored. */
  add(record: SoftwarePackage): void {
    this.#read += 1;
    const outcome = storablePackage(record);
    if ('skipped' in outcome) return this.#skipped.add(outcome.skipped, record.name);
    this.#packages.push(outcome.record);
    for (const reason of outcome.normalised) this.#skipped.add(reason, record.name);
  }

  /** Counts an entry read and left out on purpose (not installed, part of another product). */
  excluded(): void {
    this.#read += 1;
  }

  /** Counts a line (or entry) at position `at` (1-based) that holds no record the parser can read. */
  unreadable(at: number, text: string): void {
    this.#unreadable += 1;
    this.#firstUnreadable ??= { at, text };
    this.#skipped.add('unparsable', text);
  }

  /** The records read; throws when the output is not a list with odd lines (see above). */
  done(): ParsedPackages {
    const first = this.#firstUnreadable;
    if (first && (this.#read === 0 || (this.#unreadable > this.#read && this.#unreadable > UNREADABLE_ALLOWED))) {
      throw unparsable(this.#source, `${this.#unreadable} of ${this.#unreadable + this.#read} entries cannot be read, the first: ${JSON.stringify(first.text.slice(0, 80))}`, first.at);
    }
    return { packages: this.#packages, skipped: this.#skipped.list() };
  }
}

/** Several parses as one (formulae and casks). */
export function mergeParsed(...parts: readonly ParsedPackages[]): ParsedPackages {
  return { packages: parts.flatMap((part) => part.packages), skipped: new SkipTally().addAll(parts.flatMap((part) => part.skipped)).list() };
}
