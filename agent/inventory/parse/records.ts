import { packageSkipReason, SkipTally, type SkippedPackages } from '../../../common/inventory-records.ts';
import { unparsable } from '../errors.ts';
import type { SoftwarePackage } from '../package.ts';

/** What a parser read from a tool's output: the records it keeps, and those it skipped, by reason. */
export interface ParsedPackages {
  readonly packages: SoftwarePackage[];
  readonly skipped: SkippedPackages[];
}

/**
 * A parser's records as it reads them, one at a time. Any record a package manager can print is kept
 * (an empty version, any architecture); one that cannot be stored (common/inventory-records.ts: no
 * name, a field over its cap) is skipped and counted, and so is a line or entry the parser cannot
 * read at all. One odd line never costs the scan. But when more lines cannot be read than can, the
 * tool printed something other than the format we read (an error message, a changed format): that
 * fails the collection (ERR_INVENTORY_COLLECTOR_FAILED), so it is never taken for a short list.
 */
export class PackageRecords {
  readonly #source: string;
  readonly #packages: SoftwarePackage[] = [];
  readonly #skipped = new SkipTally();
  #unreadable = 0;
  #firstUnreadable: { at: number; text: string } | undefined;

  constructor(source: string) {
    this.#source = source;
  }

  /** Keeps the record, or counts it skipped when it cannot be stored. */
  add(record: SoftwarePackage): void {
    const reason = packageSkipReason(record);
    if (reason === undefined) this.#packages.push(record);
    else this.#skipped.add(reason, record.name);
  }

  /** Counts a line (or entry) at position `at` (1-based) that holds no record the parser can read. */
  unreadable(at: number, text: string): void {
    this.#unreadable += 1;
    this.#firstUnreadable ??= { at, text };
    this.#skipped.add('unparsable', text);
  }

  /** The records read; throws when unreadable lines outnumber the records (see above). */
  done(): ParsedPackages {
    const first = this.#firstUnreadable;
    if (first && this.#unreadable > this.#packages.length) {
      throw unparsable(this.#source, `${this.#unreadable} of ${this.#unreadable + this.#packages.length} entries cannot be read, the first: ${JSON.stringify(first.text.slice(0, 80))}`, first.at);
    }
    return { packages: this.#packages, skipped: this.#skipped.list() };
  }
}

/** Several parses as one (two registry views, formulae and casks). */
export function mergeParsed(...parts: readonly ParsedPackages[]): ParsedPackages {
  return { packages: parts.flatMap((part) => part.packages), skipped: new SkipTally().addAll(parts.flatMap((part) => part.skipped)).list() };
}
