import { once } from 'node:events';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { packageRoot } from '../../common/package-root.ts';
import { failureFields } from '../health/storage-health.ts';
import type { Db } from './database.ts';
import { storageFailure } from './storage-failure.ts';
import type { CheckpointWorkerData, FromCheckpointWorker, ToCheckpointWorker } from './wal-checkpoint-worker.ts';

/** How often the thread checkpoints: about one VitalsWriter flush (one transaction a second) per checkpoint. */
const CHECKPOINT_INTERVAL_MS = 1000;

/**
 * The WAL's bound, bytes. Past it writes wait while the thread completes a checkpoint (see
 * WalCheckpointer), and the first commit after the WAL restarts cuts the file back to it (PRAGMA
 * journal_size_limit). SQLite's own checkpoint kept the WAL near 1,000 pages (4 MiB); one
 * VitalsWriter flush of 1,000 hosts writes about that much.
 */
const WAL_SIZE_LIMIT_BYTES = 32 * 1024 * 1024;

/**
 * How long after the stores open the thread starts: after the appliance listens, so its start (a V8
 * isolate and the thread's modules, about 60 ms of CPU) does not delay the port agents retry
 * (issue 14: under 0.5 s of CPU to listen). Until then SQLite checkpoints in the commits as before.
 */
const THREAD_START_DELAY_MS = 5_000;

/** The longest writes wait for a checkpoint they were held for (a thread stuck in an fsync must not stop the writes). */
const HOLD_MAX_MS = 2_000;

/** SQLite's default wal_autocheckpoint (pages), on the serving connection until the thread starts and again if it dies. */
const SQLITE_AUTOCHECKPOINT_PAGES = 1000;

/**
 * Runs `during` while no transaction of the serving connection runs or starts (the appliance: Kysely's
 * `connection()`, which holds the one connection's mutex), and resolves after it.
 */
export type HoldWrites = (during: () => Promise<void>) => Promise<void>;

export interface WalCheckpointerOptions {
  readonly intervalMs?: number;
  readonly sizeLimitBytes?: number;
  readonly startDelayMs?: number;
}

/**
 * - `waiting`: the thread starts after THREAD_START_DELAY_MS; SQLite checkpoints in the commits meanwhile.
 * - `threaded`: the thread checkpoints; the serving connection never does.
 * - `inline`: the thread died; SQLite checkpoints in the commit that passes 1,000 WAL pages again.
 * - `closed`: close() ran.
 */
type CheckpointerState = 'waiting' | 'threaded' | 'inline' | 'closed';

/** A run of ticks that found the WAL past its bound: how often, and how long in all, writes waited for a checkpoint. */
interface OverLimit {
  holds: number;
  heldMs: number;
}

/**
 * Checkpoints the WAL of the serving connection `db` (its file `path`) from a worker thread with a
 * connection of its own (wal-checkpoint-worker.ts, decision 155), so no commit on the event loop
 * copies the WAL into the database file and fsyncs (SQLite's automatic checkpoint blocked the loop
 * 28–60 ms each time at 18,000 agents). Turns the automatic checkpoint off on `db` once the thread
 * starts, `startDelayMs` after construction.
 *
 * The WAL restarts from its start at the first write after a checkpoint that copied all of it; when
 * writes overlap every checkpoint of the thread (a registration storm), that never happens and the
 * WAL grows. So once a tick reports it past `sizeLimitBytes`, writes are held (`holdWrites`: they
 * wait asynchronously, the event loop stays free) while the thread runs one more checkpoint, which
 * then copies all of the WAL, and the first write after restarts it. A failed checkpoint is logged
 * with its catalogue code (the first of a run, then the recovery); a thread that dies is logged and
 * SQLite's automatic checkpoint is turned back on, so the WAL stays bounded. close() ends the thread
 * before the serving connection closes, which, as the last connection, then checkpoints the whole WAL
 * and removes it.
 */
export class WalCheckpointer {
  readonly #db: Db;
  readonly #holdWrites: HoldWrites;
  readonly #log: Logger | undefined;
  readonly #limitFrames: number;
  readonly #startTimer: NodeJS.Timeout;
  #worker: Worker | undefined;
  #state: CheckpointerState = 'waiting';
  /** The thread's uncaught error, for the log line of its exit. */
  #workerError: unknown;
  /** A checkpoint failed and none succeeded since: later failures are not logged again. */
  #failing = false;
  #overLimit: OverLimit | undefined;
  /** A hold of the writes for a checkpoint, from the request until the writes run again. */
  #hold: Promise<void> | undefined;
  /** Ends the hold: set while the writes wait for the checkpoint the thread was asked for. */
  #releaseWrites: (() => void) | undefined;

  constructor(db: Db, path: string, holdWrites: HoldWrites, log: Logger | undefined, options: WalCheckpointerOptions = {}) {
    this.#db = db;
    this.#holdWrites = holdWrites;
    this.#log = log;
    const sizeLimitBytes = options.sizeLimitBytes ?? WAL_SIZE_LIMIT_BYTES;
    this.#limitFrames = Math.ceil(sizeLimitBytes / (db.pragma('page_size', { simple: true }) as number));
    db.pragma(`journal_size_limit = ${sizeLimitBytes}`);
    const data: CheckpointWorkerData = { path, intervalMs: options.intervalMs ?? CHECKPOINT_INTERVAL_MS };
    // Unreferenced, as the thread: a serving process ends by closing its stores; a tool that forgets to must still exit.
    this.#startTimer = setTimeout(() => this.#start(data), options.startDelayMs ?? THREAD_START_DELAY_MS).unref();
  }

  /** Ends the thread (its connection closed) and waits for it; the serving connection may close after. */
  async close(): Promise<void> {
    clearTimeout(this.#startTimer);
    const worker = this.#state === 'threaded' ? this.#worker : undefined;
    this.#state = 'closed';
    this.#releaseWrites?.();
    if (!worker) return;
    const exited = once(worker, 'exit');
    // Referenced again: the process must not end before the thread has closed its connection.
    worker.ref();
    worker.postMessage({ kind: 'stop' } satisfies ToCheckpointWorker);
    await exited;
  }

  #start(data: CheckpointWorkerData): void {
    if (this.#state !== 'waiting') return;
    this.#state = 'threaded';
    this.#db.pragma('wal_autocheckpoint = 0');
    const worker = startWorker(data);
    worker.unref();
    worker.on('message', (message: FromCheckpointWorker) => this.#received(message));
    worker.on('error', (error) => {
      this.#workerError = error;
    });
    worker.on('exit', (code) => this.#exited(code));
    this.#worker = worker;
  }

  #received(message: FromCheckpointWorker): void {
    if (message.requested) this.#releaseWrites?.();
    if (this.#state !== 'threaded') return;
    if (message.kind === 'failed') {
      if (this.#failing) return;
      this.#failing = true;
      const error = new Database.SqliteError(message.message, message.sqliteCode);
      this.#log?.error(failureFields(storageFailure(error) ?? error), 'WAL checkpoint failed: the WAL grows until one succeeds');
      return;
    }
    if (this.#failing) {
      this.#failing = false;
      this.#log?.info({ wal_frames: message.walFrames }, 'WAL checkpoints succeed again');
    }
    // A requested checkpoint's answer still counts the frames: the WAL restarts at the next write.
    if (message.requested) return;
    if (message.walFrames >= this.#limitFrames) this.#holdWritesForCheckpoint(message.walFrames);
    else if (this.#overLimit) {
      this.#log?.info({ holds: this.#overLimit.holds, held_ms: Math.round(this.#overLimit.heldMs) }, 'the WAL is back within its size limit');
      this.#overLimit = undefined;
    }
  }

  /** Holds the writes until the thread has run one checkpoint for them (at most HOLD_MAX_MS); one hold at a time. */
  #holdWritesForCheckpoint(walFrames: number): void {
    const worker = this.#worker;
    if (this.#hold || !worker) return;
    const episode = (this.#overLimit ??= { holds: 0, heldMs: 0 });
    if (episode.holds === 0) this.#log?.info({ wal_frames: walFrames, limit_frames: this.#limitFrames }, 'the WAL passed its size limit under continuous writes: writes wait for a checkpoint until it is back');
    const start = performance.now();
    const checkpointed = (): Promise<void> =>
      new Promise((resolve) => {
        if (this.#state !== 'threaded') return resolve();
        const timer = setTimeout(() => this.#releaseWrites?.(), HOLD_MAX_MS);
        this.#releaseWrites = () => {
          clearTimeout(timer);
          this.#releaseWrites = undefined;
          resolve();
        };
        worker.postMessage({ kind: 'checkpoint' } satisfies ToCheckpointWorker);
      });
    this.#hold = this.#holdWrites(checkpointed)
      .then(
        () => {
          episode.holds += 1;
          episode.heldMs += performance.now() - start;
        },
        (error: unknown) => this.#log?.error({ err: error }, 'holding the writes for a WAL checkpoint failed'),
      )
      .finally(() => {
        this.#hold = undefined;
      });
  }

  #exited(code: number): void {
    if (this.#state !== 'threaded') return;
    this.#state = 'inline';
    this.#releaseWrites?.();
    if (this.#db.open) this.#db.pragma(`wal_autocheckpoint = ${SQLITE_AUTOCHECKPOINT_PAGES}`);
    this.#log?.error({ err: this.#workerError, exit_code: code }, 'the WAL checkpoint thread stopped: SQLite checkpoints in the commits again (event-loop stalls under load)');
  }
}

/**
 * The thread, from the bundle's dist/wal-checkpoint-worker.js (scripts/build.mjs, the image's
 * bundle.mjs), or from source under tsx: on Node 20 a worker thread does not get the module hooks
 * that `--import tsx` registered, so it registers tsx itself before importing the TypeScript entry.
 */
function startWorker(data: CheckpointWorkerData): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(pathToFileURL(join(packageRoot(), 'dist', 'wal-checkpoint-worker.js')), { workerData: data });
  const entry = new URL('./wal-checkpoint-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const source = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(source, { eval: true, workerData: data });
}
