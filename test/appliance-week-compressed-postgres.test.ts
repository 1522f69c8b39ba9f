import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import pg from 'pg';
import { pino } from 'pino';
import { openPostgresStores } from '../appliance/store/index.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { liveWeek, TITLE } from './helpers/week.ts';

// Issue 14, a week compressed (test/helpers/week.ts) on a private PostgreSQL cluster: half the
// fleet of the SQLite run, for the same wall time (each statement is a round trip).
after(async () => (await sharedPostgres()).stop());

test(`${TITLE} [postgres]`, { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-week-pg-'));
  const url = await (await sharedPostgres()).createDatabase('week');
  const log = pino({ level: 'silent' });
  const stores = await openPostgresStores(url, { log, poolSize: 4 });
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const query = async <Row extends object>(sql: string, params: unknown[] = []): Promise<Row[]> => {
    let placeholder = 0;
    // The week's SQL is written with SQLite's `?`: PostgreSQL numbers them.
    return (await client.query<Row>(sql.replace(/\?/g, () => `$${++placeholder}`), params)).rows;
  };
  await liveWeek(log, 150, dir, {
    stores,
    // count(*) and bigint columns arrive as text from pg.
    count: async (sql, ...params) => Number((await query<{ n: string }>(sql, params))[0]!.n),
    sizes: async () => {
      // Autovacuum's work (docs/operations.md: keep it on), done at the same moment each day so the
      // measure does not hang on its timing: the files then hold what the week keeps, plus reusable space.
      await client.query('VACUUM');
      const rows = await query<{ tbl: string; bytes: string }>(
        "SELECT c.relname AS tbl, pg_total_relation_size(c.oid) AS bytes FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r'",
      );
      const kib: Record<string, number> = {};
      let liveBytes = 0;
      for (const row of rows) {
        kib[row.tbl] = Math.round(Number(row.bytes) / 1024);
        liveBytes += Number(row.bytes);
      }
      return { liveBytes, kib };
    },
    close: async () => {
      await client.end();
      await stores.close();
      rmSync(dir, { recursive: true, force: true });
    },
  });
});

