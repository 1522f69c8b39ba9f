/**
 * The WAL checkpoint thread (decision 155): a worker_threads entry point started by WalCheckpointer
 * (wal-checkpointer.ts), with its own better-sqlite3 connection to the appliance database. Every
 * `intervalMs` it runs `PRAGMA wal_checkpoint(PASSIVE)`, which copies the WAL's committed frames into
 * the database file and fsyncs, so the serving thread, whose connection has SQLite's automatic
 * checkpoint off, never does that work in a commit. PASSIVE is the only mode used: it takes no lock
 * a reader or writer waits for (sqlite.org/c3ref/wal_checkpoint_v2.html). FULL, RESTART and TRUNCATE
 * hold the write lock, and a transaction of the serving thread that read before it writes gets
 * SQLITE_BUSY at once then, without its busy timeout (SQLite invokes the busy handler only for a
 * transaction that has not read yet).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { openSqliteFile } from './database.ts';

/** What WalCheckpointer hands the thread (workerData). */
export interface CheckpointWorkerData {
  /** The database file (its -wal beside it). */
  readonly path: string;
  readonly intervalMs: number;
}

/** The thread's message to WalCheckpointer after each checkpoint: a tick's, or one it asked for (`requested`). */
export type FromCheckpointWorker = (
  /** `walFrames`: frames in the WAL at the checkpoint (since its last restart); `backfilledFrames`: those of them now in the database file. */
  | { readonly kind: 'checkpointed'; readonly walFrames: number; readonly backfilledFrames: number }
  /** A checkpoint failed with this SQLite error (code such as SQLITE_FULL, SQLITE_IOERR_WRITE); the next tick tries again. */
  | { readonly kind: 'failed'; readonly sqliteCode: string; readonly message: string }
) & { readonly requested: boolean };

/** WalCheckpointer's messages: checkpoint now (the writes wait for the answer), or close the connection and end the thread. */
export type ToCheckpointWorker = { readonly kind: 'checkpoint' } | { readonly kind: 'stop' };

interface CheckpointRow {
  readonly busy: number;
  readonly log: number;
  readonly checkpointed: number;
}

/**
 * More PASSIVE checkpoints a tick runs while writes committed during the previous one left frames
 * uncopied: each copies only those, so the last likely ends with the WAL fully copied, and only a
 * write that begins after that restarts the WAL from its start.
 */
const CATCH_UP_PASSES = 3;

function checkpoint(db: Database.Database, requested: boolean): FromCheckpointWorker {
  const passive = (): CheckpointRow => (db.pragma('wal_checkpoint(PASSIVE)') as CheckpointRow[])[0]!;
  try {
    let row = passive();
    for (let pass = 0; pass < CATCH_UP_PASSES && row.busy === 0 && row.checkpointed < row.log; pass += 1) row = passive();
    return { kind: 'checkpointed', walFrames: row.log, backfilledFrames: row.checkpointed, requested };
  } catch (error) {
    if (error instanceof Database.SqliteError) return { kind: 'failed', sqliteCode: error.code, message: error.message, requested };
    throw error;
  }
}

function run(port: NonNullable<typeof parentPort>, data: CheckpointWorkerData): void {
  // An error here (the file cannot be opened) ends the thread: WalCheckpointer falls back to SQLite's own checkpoints.
  const db = openSqliteFile(data.path, { fileMustExist: true });
  const timer = setInterval(() => port.postMessage(checkpoint(db, false)), data.intervalMs);
  port.on('message', (message: ToCheckpointWorker) => {
    if (message.kind === 'checkpoint') {
      port.postMessage(checkpoint(db, true));
      return;
    }
    clearInterval(timer);
    // Not the last connection (the serving one stays open): closing checkpoints nothing here.
    db.close();
    port.close();
  });
}

if (parentPort) run(parentPort, workerData as CheckpointWorkerData);
