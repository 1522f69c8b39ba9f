import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { postgresKysely } from '../appliance/store/dialects.ts';
import { postgresSchemaVersion } from '../appliance/store/postgres-migrate.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { APPLIANCE_BIN, run } from './helpers/processes.ts';

const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-postgres-serve-'));
after(async () => {
  rmSync(dataDir, { recursive: true, force: true });
  await (await sharedPostgres()).stop();
});

/** `serve` with the database URL in the environment (as a unit file would give it), on loopback and free ports. */
function serve(databaseUrl: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return run(process.execPath, [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0'], { CT_OPS_APPLIANCE_DATABASE: databaseUrl }, 60_000);
}

// Until every table store is built over an Executor (issue 11's store conversion), serve on PostgreSQL
// migrates the database and then refuses by name; when the stores are converted this test turns into
// "serves on PostgreSQL".
test('serve with a PostgreSQL URL migrates that database to the latest schema, then refuses to serve naming the stores still on the SQLite handle; the password appears nowhere', { timeout: 90_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('serve_refused');
  const result = await serve(url);
  assert.equal(result.code, 78, `exit code of ERR_CONFIG_INVALID; stderr: ${result.stderr}`);
  assert.match(result.stderr, /ct-ops-appliance: ERR_CONFIG_INVALID: this build cannot serve on PostgreSQL yet: the stores .*hosts.* still run on the SQLite handle/);
  assert.ok(!`${result.stdout}${result.stderr}`.includes(cluster.password), 'no password in the output');
  const kysely = postgresKysely(url, { poolSize: 1 });
  try {
    assert.equal(await postgresSchemaVersion(kysely), MIGRATIONS.length);
  } finally {
    await kysely.destroy();
  }
});

test('serve with a PostgreSQL server that does not answer fails the start with ERR_STORAGE_UNAVAILABLE within the connect timeout, without the password', { timeout: 90_000 }, async () => {
  const cluster = await sharedPostgres();
  // Port 1 on loopback: nothing listens there, so the connection is refused at once.
  const started = Date.now();
  const result = await serve(`postgres://ctops:${cluster.password}@127.0.0.1:1/nowhere`);
  assert.equal(result.code, 75, `exit code of ERR_STORAGE_UNAVAILABLE (TEMP_FAIL); stderr: ${result.stderr}`);
  assert.match(result.stderr, /ct-ops-appliance: ERR_STORAGE_UNAVAILABLE: the database cannot be written \(the PostgreSQL server cannot be reached: ECONNREFUSED\)/);
  assert.ok(!`${result.stdout}${result.stderr}`.includes(cluster.password), 'no password in the output');
  assert.ok(Date.now() - started < 30_000, 'bounded');
});
