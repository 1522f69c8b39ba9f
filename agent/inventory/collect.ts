import type { CollectContext, InventoryCollector } from './collectors/collector.ts';
import { SkipTally, type SkippedPackages } from '../../common/inventory-records.ts';
import { dedupePackages } from './dedupe.ts';
import { InventoryError } from './errors.ts';
import type { SoftwarePackage } from './package.ts';
import type { ParsedPackages } from './parse/records.ts';
import { collectionPlanFor, type CollectionPlan, type OptionalSources } from './plan.ts';
import { readDatabaseFile } from './read.ts';
import { NOT_AVAILABLE, runCommand } from './run.ts';

export const DEFAULT_TIMEOUT_MS = 120_000;
export const DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export interface InventoryOptions {
  /** Whole-collection time limit across every tool run (default 120 s). */
  readonly timeoutMs?: number;
  /** Largest output accepted from any one tool or database file (default 64 MiB). */
  readonly maxOutputBytes?: number;
  readonly optionalSources?: OptionalSources;
  readonly platform?: NodeJS.Platform;
  /** Replaces the platform's plan (tests). */
  readonly plan?: CollectionPlan;
  /** Aborting kills the running tool and rejects with the signal's reason. */
  readonly signal?: AbortSignal;
}

export interface InventoryResult {
  readonly packages: readonly SoftwarePackage[];
  /** The collectors that contributed, in order (the primary one first). */
  readonly sources: readonly string[];
  /** Exact duplicates dropped (see dedupePackages). */
  readonly duplicatesRemoved: number;
  /** Records the parsers skipped (unreadable lines, records that cannot be stored) or changed, and exact repeats (`duplicate`), by reason. */
  readonly skipped: readonly SkippedPackages[];
}

/**
 * Lists the host's installed software. It resolves only when every collector that ran
 * succeeded; any failure rejects with an InventoryError, so a failed scan can never be
 * mistaken for an empty one. The list is empty only if the primary tool ran cleanly and
 * listed nothing (and no additional source listed anything).
 */
export async function collectInventory(options: InventoryOptions = {}): Promise<InventoryResult> {
  const platform = options.platform ?? process.platform;
  const plan = options.plan ?? collectionPlanFor(platform, options.optionalSources);
  if (!plan) throw noPackageManager(platform, []);
  const context = limitedContext(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES, options.signal);

  const collected: SoftwarePackage[] = [];
  const skipped = new SkipTally();
  const sources: string[] = [];
  const keep = (name: string, parsed: ParsedPackages): void => {
    collected.push(...parsed.packages);
    skipped.addAll(parsed.skipped);
    sources.push(name);
  };
  const primary = await firstAvailable(plan.primary, context);
  if (!primary) throw noPackageManager(platform, plan.primary.map((collector) => collector.name));
  keep(primary.name, primary.parsed);
  for (const collector of plan.additional) {
    const parsed = await collector.collect(context);
    if (parsed !== NOT_AVAILABLE) keep(collector.name, parsed);
  }
  const { packages, removed, firstRemoved } = dedupePackages(collected);
  if (removed > 0) skipped.add('duplicate', firstRemoved ?? '', removed);
  return { packages, sources, duplicatesRemoved: removed, skipped: skipped.list() };
}

async function firstAvailable(collectors: readonly InventoryCollector[], context: CollectContext): Promise<{ name: string; parsed: ParsedPackages } | undefined> {
  for (const collector of collectors) {
    const parsed = await collector.collect(context);
    if (parsed !== NOT_AVAILABLE) return { name: collector.name, parsed };
  }
  return undefined;
}

/** Every tool run gets what remains of the one collection deadline. */
function limitedContext(timeoutMs: number, maxOutputBytes: number, signal: AbortSignal | undefined): CollectContext {
  // Monotonic: a clock correction mid-collection must not make the remaining time zero or days long.
  const deadline = performance.now() + timeoutMs;
  return {
    run: (spec) => runCommand(spec, { timeoutMs: Math.ceil(deadline - performance.now()), maxOutputBytes, signal }),
    readFile: (path) => readDatabaseFile(path, maxOutputBytes),
  };
}

function noPackageManager(platform: string, tried: readonly string[]): InventoryError {
  const what = tried.length > 0 ? `none of ${tried.join(', ')} is present` : 'no collector exists for this platform';
  return new InventoryError('ERR_INVENTORY_NO_PACKAGE_MANAGER', `cannot list installed software on ${platform}: ${what}`, { platform, tried: tried.join(',') });
}
