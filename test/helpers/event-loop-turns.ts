import { setImmediate as nextTurn } from 'node:timers/promises';

/**
 * Runs `work` while counting the event loop's turns (setImmediate callbacks run) until it settles:
 * a pass that yields between its slices lets several run, one that chains synchronous statements
 * (better-sqlite3) lets none. Resolves to the work's result and the turns counted.
 */
export async function countingTurns<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let working = true;
  const counter = (async () => {
    while (working) {
      await nextTurn();
      turns += 1;
    }
  })();
  try {
    return { result: await work(), turns };
  } finally {
    working = false;
    await counter;
  }
}
