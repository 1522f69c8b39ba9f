import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { openDatabase, openSqliteFile, type Db } from '../appliance/store/database.ts';
import { openStores } from '../appliance/store/index.ts';
import { WalCheckpointer, type HoldWrites } from '../appliance/store/wal-checkpointer.ts';
import { memoryLogger } from './helpers/memory-logger.ts';
import { waitFor } from './helpers/wait.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-wal-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const PAGE = 4096;
/** Before the WAL is measured: the thread starts (under tsx it compiles its TypeScript first) and gets its first tick. */
const WARM_UP_MS = 1_500;
/** SQLite's default wal_autocheckpoint, pages. */
const AUTOCHECKPOINT_PAGES = 1000;

function walBytes(path: string): number {
  return existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
}

/**
 * A migrated database with a table of page-sized rows: `write(n)` puts about n pages into the WAL in one
 * transaction, after any hold of the writes (`holdWrites`, as Kysely's connection mutex holds the appliance's).
 */
function pageTable(name: string): { path: string; db: Db; write: (rows: number) => Promise<void>; holdWrites: HoldWrites } {
  const path = join(dir, name);
  const db = openDatabase(path);
  db.exec('CREATE TABLE filler (body BLOB NOT NULL)');
  const insert = db.prepare('INSERT INTO filler (body) VALUES (randomblob(3500))');
  const insertRows = db.transaction((rows: number) => {
    for (let row = 0; row < rows; row += 1) insert.run();
  });
  let held = Promise.resolve();
  const holdWrites: HoldWrites = (during) => {
    const run = held.then(during);
    held = run.catch(() => undefined);
    return run;
  };
  return { path, db, write: (rows) => holdWrites(async () => insertRows(rows)), holdWrites };
}

test("the serving connection never checkpoints: with the thread idle, its WAL grows past SQLite's 1,000-page automatic checkpoint, which keeps it below without the thread", async () => {
  const idle = pageTable('idle.db');
  const checkpointer = new WalCheckpointer(idle.db, idle.path, idle.holdWrites, undefined, { intervalMs: 3_600_000, startDelayMs: 0 });
  await waitFor('the thread started', () => idle.db.pragma('wal_autocheckpoint', { simple: true }) === 0);
  const inline = pageTable('inline.db');
  for (let batch = 0; batch < 30; batch += 1) {
    await idle.write(100);
    await inline.write(100);
  }
  assert.ok(walBytes(idle.path) > 2_500 * PAGE, `3,000 pages written, none checkpointed on the serving thread: the WAL holds them (${walBytes(idle.path)} bytes)`);
  assert.ok(walBytes(inline.path) < 1.5 * AUTOCHECKPOINT_PAGES * PAGE, `SQLite's own checkpoint restarted the WAL near 1,000 pages (${walBytes(inline.path)} bytes)`);
  await checkpointer.close();
  idle.db.close();
  inline.db.close();
});

/**
 * A database whose WAL a WalCheckpointer (ticking every 50 ms, bound `limit` bytes) checkpoints while
 * `transactions` transactions of `pages` pages each are written, `pauseMs` apart, after a warm-up in
 * which the thread starts (under tsx it compiles its TypeScript first). Returns the bytes written, the
 * largest the WAL file was seen after a transaction, and the checkpointer's log messages.
 */
async function writeSteadily(name: string, limit: number, transactions: number, pages: number, pauseMs: number): Promise<{ written: number; largest: number; messages: unknown[] }> {
  const table = pageTable(name);
  const { log, lines } = memoryLogger();
  const checkpointer = new WalCheckpointer(table.db, table.path, table.holdWrites, log, { intervalMs: 50, sizeLimitBytes: limit, startDelayMs: 0 });
  await sleep(WARM_UP_MS);
  let largest = 0;
  for (let count = 0; count < transactions; count += 1) {
    await table.write(pages);
    largest = Math.max(largest, walBytes(table.path));
    await sleep(pauseMs);
  }
  await checkpointer.close();
  table.db.close();
  return { written: transactions * pages * PAGE, largest, messages: lines().map((line) => line.msg) };
}

test('one 1 MB transaction every 50 ms, 80 in all: the thread alone keeps the WAL within its bound, a fifth of what passed through it', async () => {
  const limit = 16 * 1024 * 1024;
  const { written, largest, messages } = await writeSteadily('steady.db', limit, 80, 250, 50);
  assert.ok(largest <= limit, `the WAL stayed within its bound (${largest} bytes of ${limit}; ${written} written)`);
  assert.deepEqual(messages, [], 'the writes never had to wait for a checkpoint');
});

test('writes 1 ms apart overlap every checkpoint of the thread: once the WAL passes its bound the writes wait for one, it says so, and the WAL stays a small part of what passed through it', async () => {
  const { written, largest, messages } = await writeSteadily('busy.db', 2 * 1024 * 1024, 1_500, 25, 1);
  assert.ok(messages.includes('the WAL passed its size limit under continuous writes: writes wait for a checkpoint until it is back'));
  assert.ok(largest < written / 4, `the WAL (at most ${largest} bytes) holds a small part of the ${written} bytes written`);
});

test('closing the stores ends the thread and leaves a checkpointed database with no -wal file', async () => {
  const path = join(dir, 'closed.db');
  const stores = openStores(path, { checkpointThread: true });
  // The thread starts 5 s after the stores open (after the appliance listens).
  await waitFor('the thread started', () => stores.db.pragma('wal_autocheckpoint', { simple: true }) === 0, 15_000);
  stores.db.exec('CREATE TABLE filler (body BLOB NOT NULL)');
  const insert = stores.db.prepare('INSERT INTO filler (body) VALUES (randomblob(3500))');
  stores.db.transaction(() => {
    for (let row = 0; row < 3_000; row += 1) insert.run();
  })();
  assert.ok(walBytes(path) > 2_500 * PAGE);
  await stores.close();
  assert.equal(existsSync(`${path}-wal`), false, 'the last connection to close checkpointed the WAL and removed it');
  const reader = openSqliteFile(path, { readonly: true, fileMustExist: true });
  assert.equal((reader.prepare('SELECT count(*) AS n FROM filler').get() as { n: number }).n, 3_000);
  assert.equal(reader.pragma('integrity_check', { simple: true }), 'ok');
  reader.close();
});

test("a thread that cannot open the database is logged, and SQLite's automatic checkpoint is turned back on", async () => {
  const { path, db, holdWrites } = pageTable('fallback.db');
  const { log, lines } = memoryLogger();
  const checkpointer = new WalCheckpointer(db, join(dir, 'missing', 'appliance.db'), holdWrites, log, { intervalMs: 50, startDelayMs: 0 });
  const line = await waitFor('the fallback logged', () => lines().find((entry) => entry.msg === 'the WAL checkpoint thread stopped: SQLite checkpoints in the commits again (event-loop stalls under load)'));
  assert.match(String((line.err as { message?: string } | undefined)?.message), /unable to open database file|directory does not exist/);
  assert.equal(db.pragma('wal_autocheckpoint', { simple: true }), AUTOCHECKPOINT_PAGES);
  await checkpointer.close();
  db.close();
  assert.ok(existsSync(path));
});
