/**
 * Waits until every promise of `promises` settled (fulfilled or rejected), or `boundMs` (ms) passed,
 * whichever comes first; true when they all settled in time. A stop waits so for work under way
 * (offline bookkeeping, periodic passes) that must not hold it for ever. Never rejects.
 */
export async function settledWithin(promises: Iterable<Promise<unknown>>, boundMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), boundMs)));
  const settled = await Promise.race([Promise.allSettled(promises).then(() => true as const), bound]);
  clearTimeout(timer);
  return settled;
}
