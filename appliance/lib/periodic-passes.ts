import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { failureFields } from '../health/storage-health.ts';
import { settledWithin } from './settled-within.ts';

/** One periodic pass: `signal` is aborted when the appliance stops, and a pass that loops should end at its next step. */
export type Pass = (signal: AbortSignal) => unknown;

/**
 * The appliance's periodic passes (sweeps, prunes, purges, expiries), each on its own timer. Where
 * nothing can answer a failure it is logged (the storage refusing writes is the expected case),
 * thrown or as the rejection of the promise the pass returns, never thrown into the event loop. A
 * pass whose previous run is still going is not started again by its timer: at scale a pass may
 * outlast its interval, and a second run beside it would redo its work. Asked for by an event
 * (`every`'s trigger) while running, it runs once more when the run ends: the event may have come
 * after the run read what it needed.
 *
 * stop() ends them as the stores are about to close: the timers are cleared, every running pass's
 * signal is aborted, and stop resolves once they all ended. Before, a pass in flight at a stop (a
 * software sweep queueing scans for 16,000 hosts, one at a time) went on after the database was
 * closed and logged "driver has already been destroyed" for each step left (bench:fleet, issue 14).
 */
export class PeriodicPasses {
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  readonly #timers: NodeJS.Timeout[] = [];
  readonly #running = new Map<string, Promise<void>>();
  /** Passes asked for by their trigger while running: each runs again once. */
  readonly #again = new Set<string>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /**
   * Runs `pass` every `intervalMs` (and once at once when `runNow`), named by `failure`: the log
   * message of its failures and its identity (one run of each name at a time). Returns its trigger:
   * a run now, or once more after the one running (nothing once stopped).
   */
  every(intervalMs: number, failure: string, pass: Pass, options: { runNow?: boolean } = {}): () => void {
    this.#timers.push(setInterval(() => this.#run(failure, pass), intervalMs));
    if (options.runNow) this.#run(failure, pass);
    return () => {
      if (this.#running.has(failure)) this.#again.add(failure);
      else this.#run(failure, pass);
    };
  }

  /**
   * Clears every timer, aborts the running passes' signal, and resolves once they ended, or after
   * `graceMs` (ms) with the names of those still running logged: a pass that ignores its signal
   * must not hold a stop for ever. Never rejects.
   */
  async stop(graceMs: number): Promise<void> {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.length = 0;
    this.#stopping.abort();
    if (this.#running.size === 0) return;
    const started = performance.now();
    if (!(await settledWithin(this.#running.values(), graceMs))) this.#log.warn({ passes: [...this.#running.keys()], waited_ms: Math.round(performance.now() - started) }, 'periodic passes still running at the stop');
  }

  #run(name: string, pass: Pass): void {
    if (this.#stopping.signal.aborted || this.#running.has(name)) return;
    const report = (error: unknown): void => this.#log.error(failureFields(error), name);
    let result: unknown;
    try {
      result = pass(this.#stopping.signal);
    } catch (error) {
      report(error);
      return;
    }
    if (!(result instanceof Promise)) return;
    const running = result.then(() => undefined, report).finally(() => {
      this.#running.delete(name);
      if (this.#again.delete(name)) this.#run(name, pass);
    });
    this.#running.set(name, running);
  }
}
