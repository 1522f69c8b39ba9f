import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openStores } from '../appliance/store/index.ts';
import { liveWeek, TITLE } from './helpers/week.ts';

// Issue 14, a week compressed (test/helpers/week.ts) on the SQLite file, as an appliance serves by default.
test(`${TITLE} [sqlite]`, { timeout: 240_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-week-'));
  const path = join(dir, 'appliance.db');
  const log = pino({ level: 'silent' });
  const stores = openStores(path, { log });
  // A second, read-only connection for the measurements only: PRAGMAs, dbstat and counts.
  const reader = new Database(path, { readonly: true });
  const pragma = (name: string): number => reader.pragma(name, { simple: true }) as number;
  await liveWeek(log, 300, dir, {
    stores,
    count: async (sql, ...params) => (reader.prepare(sql).get(...params) as { n: number }).n,
    sizes: async () => {
      const kib: Record<string, number> = {};
      const payloadKib: Record<string, number> = {};
      const objects = reader
        .prepare('SELECT s.tbl_name AS tbl, sum(d.pgsize) AS bytes, sum(d.payload) AS payload FROM dbstat d JOIN sqlite_schema s ON s.name = d.name GROUP BY s.tbl_name')
        .all() as { tbl: string; bytes: number; payload: number }[];
      for (const { tbl, bytes, payload } of objects) {
        kib[tbl] = Math.round(bytes / 1024);
        payloadKib[tbl] = Math.round(payload / 1024);
      }
      return { liveBytes: (pragma('page_count') - pragma('freelist_count')) * pragma('page_size'), kib, payloadKib };
    },
    close: async () => {
      reader.close();
      await stores.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});

