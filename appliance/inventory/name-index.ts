import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import type { NameEntry, NameRange, SoftwareInventoryStore } from '../store/software-inventory.ts';
import { inSlices } from '../store/slices.ts';

/**
 * Package ids (an upper bound of rows) one batch takes: large enough that a batch touches each page
 * of the name index about once (entries sorted by name), small enough to hold its entries in memory
 * (about 5 MB).
 */
export const NAME_INDEX_BATCH = 50_000;

/**
 * Name-index entries written per statement, the event loop free between statements: 1.8 ms p50 and
 * 22.6 ms p99 each at 1,500 hosts on the shared 2-core machine under a load of 5 (2,000: 4.9 and
 * 30.6 ms, no less CPU per package; docs/BENCHMARKS.md, decisions.md 158).
 */
const ENTRIES_PER_STATEMENT = 1_000;

/**
 * Indexes the pending package rows by name, batch after batch, while the pending ranges span at least
 * `batchAtLeast` ids (1: until none is left); returns the entries added. A batch reads the
 * entries of its ranges (the oldest ranges spanning NAME_INDEX_BATCH ids) one range per statement,
 * merges them into name order two lists at a time, writes them ENTRIES_PER_STATEMENT per statement
 * in that order — so each statement touches its own run of index pages, together the pages one
 * statement for the whole batch would touch — and then deletes exactly the ranges it read. Every statement is short and the event loop runs between
 * them (issue 14: no pass blocks it for more than 20 ms); nothing holds a transaction across them.
 * Until its ranges go, lookups read them as well as the index (hostsWithPackage), so a batch cut
 * off half way is re-read by the next, its entries already written ignored. Two batches running at
 * once (two instances on PostgreSQL) may write the same entries; each deletes only its own ranges.
 */
export async function indexNameBatches(store: SoftwareInventoryStore, batchAtLeast: number): Promise<number> {
  let added = 0;
  while ((await store.pendingNameIds()) >= Math.max(batchAtLeast, 1)) {
    const ranges = oldestSpanning(await store.pendingNameRanges(), NAME_INDEX_BATCH);
    if (ranges.length === 0) break;
    let lists: NameEntry[][] = [];
    for (const range of ranges) {
      lists.push(distinct((await store.namesInRange(range)).sort(byNameThenHost)));
      await yieldToEventLoop();
    }
    while (lists.length > 1) {
      const merged: NameEntry[][] = [];
      for (let i = 0; i < lists.length; i += 2) {
        merged.push(i + 1 < lists.length ? mergeTwo(lists[i]!, lists[i + 1]!) : lists[i]!);
        await yieldToEventLoop();
      }
      lists = merged;
    }
    const entries = lists[0] ?? [];
    let written = 0;
    added += await inSlices(async () => {
      const slice = entries.slice(written, (written += ENTRIES_PER_STATEMENT));
      return { affected: await store.addNameEntries(slice), more: written < entries.length };
    });
    await store.dropNameRanges(ranges);
  }
  return added;
}

/** The first of `ranges` (oldest first) until they span `ids` ids, at least one. */
function oldestSpanning(ranges: readonly NameRange[], ids: number): NameRange[] {
  let spanned = 0;
  const taken: NameRange[] = [];
  for (const range of ranges) {
    if (spanned >= ids) break;
    taken.push(range);
    spanned += range.lastId - range.firstId + 1;
  }
  return taken;
}

/**
 * JavaScript's string order (UTF-16 code units): SQLite's BINARY order of the index but for
 * characters beyond U+FFFF against U+E000–U+FFFF, and not a PostgreSQL locale's collation. Only the
 * pages touched depend on it; every entry is written whatever the order.
 */
function byNameThenHost(a: NameEntry, b: NameEntry): number {
  if (a.name !== b.name) return a.name < b.name ? -1 : 1;
  return a.hostId < b.hostId ? -1 : a.hostId > b.hostId ? 1 : 0;
}

/** `sorted` without its repeats (a name the host has in several versions or architectures). */
function distinct(sorted: readonly NameEntry[]): NameEntry[] {
  return sorted.filter((entry, i) => i === 0 || byNameThenHost(sorted[i - 1]!, entry) !== 0);
}

/**
 * `a` and `b` (each sorted by byNameThenHost, each entry once) merged in that order, each entry once.
 * Read by the batch pairwise, the lists halving in number each round: about 350,000 comparisons for
 * a batch of 100 ranges of 500, none of them longer than a merge of two lists (a whole sort of 50,000
 * entries at once held the event loop for about 26 ms).
 */
function mergeTwo(a: readonly NameEntry[], b: readonly NameEntry[]): NameEntry[] {
  const merged: NameEntry[] = [];
  let [i, j] = [0, 0];
  while (i < a.length && j < b.length) {
    const order = byNameThenHost(a[i]!, b[j]!);
    merged.push(order <= 0 ? a[i]! : b[j]!);
    if (order <= 0) i += 1;
    if (order >= 0) j += 1;
  }
  for (; i < a.length; i += 1) merged.push(a[i]!);
  for (; j < b.length; j += 1) merged.push(b[j]!);
  return merged;
}
