import type { ParsedPackages } from '../parse/records.ts';
import type { CommandSpec, NOT_AVAILABLE } from '../run.ts';

/** What a collector may do: run a tool or read a database file, both within the collection's limits. */
export interface CollectContext {
  run(spec: CommandSpec): Promise<string | typeof NOT_AVAILABLE>;
  readFile(path: string): Promise<string | typeof NOT_AVAILABLE>;
}

/** One source of installed packages (a package manager, the registry, an app catalogue). */
export interface InventoryCollector {
  /** The source name its packages carry ("dpkg", "rpm", "homebrew", ...). */
  readonly name: string;
  /**
   * The packages (and the records skipped, by reason), or NOT_AVAILABLE when the source is not on
   * this host. Any failure throws: a collector never answers an empty list for a tool it could not read.
   */
  collect(context: CollectContext): Promise<ParsedPackages | typeof NOT_AVAILABLE>;
}
