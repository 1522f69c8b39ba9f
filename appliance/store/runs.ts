/**
 * `items` in order, cut into runs whose lengths are powers of two, longest first, none longer than
 * `max` (a power of two): 200 items with max 512 are runs of 128, 64 and 8. A multi-row statement
 * over a run then has one of log2(max) + 1 shapes, so the prepared-statement cache
 * (dialects.ts keepStatementsPrepared) keeps a handful of them, whatever the batch sizes are.
 */
export function powerOfTwoRuns<T>(items: readonly T[], max: number): T[][] {
  const runs: T[][] = [];
  let start = 0;
  for (let length = max; length >= 1; length /= 2) {
    while (items.length - start >= length) {
      runs.push(items.slice(start, start + length));
      start += length;
    }
  }
  return runs;
}

/** The most host ids one statement binds: far inside the bound-parameter limits (SQLite's 32,766; PostgreSQL's 65,535). */
export const HOSTS_PER_STATEMENT = 500;

/** `items` in order, in slices of at most `size` (the last may be shorter): one statement each. */
export function slices<T>(items: readonly T[], size: number): T[][] {
  const result: T[][] = [];
  for (let start = 0; start < items.length; start += size) result.push(items.slice(start, start + size));
  return result;
}
