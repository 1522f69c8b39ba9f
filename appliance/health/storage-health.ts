import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';

const STORAGE_FAILURE_CODES = ['ERR_STORAGE_FULL', 'ERR_STORAGE_UNAVAILABLE', 'ERR_STORAGE_CORRUPT'] as const;

/** The catalogue codes of a failure of the storage itself, as opposed to a refused request. */
export type StorageFailureCode = (typeof STORAGE_FAILURE_CODES)[number];

/** True for the error the store layer throws when the storage failed (the write was not stored). */
export function isStorageFailure(error: unknown): error is CtOpsError & { code: StorageFailureCode } {
  return error instanceof CtOpsError && (STORAGE_FAILURE_CODES as readonly string[]).includes(error.code);
}

/**
 * Whether the database takes writes, as /healthz reports it. `degraded`: a write failed at
 * `sinceMs` (epoch ms) with `reason`, and no write probe has succeeded since.
 */
export type StorageState =
  | { readonly status: 'ok' }
  | { readonly status: 'degraded'; readonly reason: StorageFailureCode; readonly message: string; readonly sinceMs: number };

/**
 * Log fields for a failure caught where nothing can be answered (a timer, a presence callback):
 * a storage failure by its codes only — it repeats while the volume is full, a stack trace each
 * time would flood the log — anything else with its stack.
 */
export function failureFields(error: unknown): Record<string, unknown> {
  return isStorageFailure(error) ? { code: error.code, sqlite_code: error.details.sqlite_code, postgres_code: error.details.postgres_code } : { err: error };
}

/** While degraded, how often one small write is tried to learn that space (or the device) came back. */
export const STORAGE_PROBE_INTERVAL_MS = 2_000;

/**
 * The appliance's storage state: `ok` until a write fails with a storage failure, then
 * `degraded` until a write probe (run every STORAGE_PROBE_INTERVAL_MS while degraded, never
 * otherwise) succeeds, so the appliance recovers by itself once space is freed.
 */
export class StorageHealth {
  readonly #probe: () => void | Promise<void>;
  readonly #log: Logger | undefined;
  #state: StorageState = { status: 'ok' };
  #probeTimer: NodeJS.Timeout | undefined;
  /** A probe is running (PostgreSQL's is a query): the next tick does not start a second one. */
  #probing = false;

  /** `probe` performs one real write and throws (or rejects) when it fails. */
  constructor(probe: () => void | Promise<void>, log?: Logger) {
    this.#probe = probe;
    this.#log = log;
  }

  get state(): StorageState {
    return this.#state;
  }

  /** A write failed with a storage failure: degraded (the first failure's time is kept), probing until one succeeds. */
  failed(error: CtOpsError & { code: StorageFailureCode }, now = Date.now()): void {
    const sinceMs = this.#state.status === 'degraded' ? this.#state.sinceMs : now;
    if (this.#state.status === 'ok') this.#log?.error(failureFields(error), 'storage degraded: writes fail');
    this.#state = { status: 'degraded', reason: error.code, message: error.message, sinceMs };
    // Unreferenced: a CLI that opened the stores must still be able to exit.
    this.#probeTimer ??= setInterval(() => void this.#runProbe(), STORAGE_PROBE_INTERVAL_MS).unref();
  }

  /** Stops probing (the database is closing). */
  close(): void {
    clearInterval(this.#probeTimer);
    this.#probeTimer = undefined;
  }

  async #runProbe(): Promise<void> {
    if (this.#state.status === 'ok') return this.close();
    if (this.#probing) return;
    const degradedMs = Date.now() - this.#state.sinceMs;
    this.#probing = true;
    try {
      await this.#probe();
    } catch {
      return;
    } finally {
      this.#probing = false;
    }
    this.close();
    this.#state = { status: 'ok' };
    this.#log?.info({ degraded_ms: degradedMs }, 'storage recovered: writes succeed again');
  }
}
