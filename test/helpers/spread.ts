/** Test support for the reconnect-spread tests (issue 9 §2). */

/** The most of `times` (ms) within any one window: the load generator's figure, one definition for both. */
export { busiestWindow } from '../../loadtest/lib/stats.ts';

/** mulberry32: a small seeded generator of [0, 1), so distribution tests are exact and repeatable. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
