import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { sql } from 'kysely';
import { LISTENER_APPLICATION_NAME } from '../appliance/store/cluster-listener.ts';
import { postgresKysely } from '../appliance/store/postgres-dialect.ts';
import { postgresSchemaVersion } from '../appliance/store/postgres-migrate.ts';
import { MIGRATIONS } from '../appliance/store/migrations/index.ts';
import { DATABASE_FILE } from '../appliance/lib/data-dir-files.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { approveAndRegister, enrolHost } from './helpers/ingest-fixture.ts';
import { HeartbeatStream, ingestClient } from './helpers/ingest-client.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { waitFor } from './helpers/wait.ts';
import { httpsJson } from './helpers/https.ts';
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

// A real appliance process on the private cluster: every store is on Kysely, so it serves from
// PostgreSQL alone (no SQLite file is made) — enrolment, the admin API and heartbeats included.
test('serves on PostgreSQL: an agent enrols, an admin approves it through the admin API, its heartbeat is stored in PostgreSQL; the password appears nowhere', { timeout: 120_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('serve_served');
  const appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_DATABASE: url } });
  const client = ingestClient(appliance.address, appliance.caCert);
  const kysely = postgresKysely(url, { poolSize: 1 });
  let stream: HeartbeatStream | undefined;
  try {
    assert.equal(await postgresSchemaVersion(kysely), MIGRATIONS.length, 'migrated to the latest schema');
    assert.equal(existsSync(join(appliance.dataDir, DATABASE_FILE)), false, 'no SQLite database beside it');
    const pending = await enrolHost(appliance, client, { hostname: 'on-postgres', autoApprove: false });
    assert.equal((await appliance.host(pending.hostId)).status, 'pending');
    stream = new HeartbeatStream(client, await approveAndRegister(appliance, client, pending));
    stream.send(pending.hostId, 1, { cpu_percent: 42 });
    await waitFor('the ack', () => stream!.acks().includes(1));
    const stored = await waitFor('the heartbeat in PostgreSQL', async () => {
      const rows = await kysely.selectFrom('host_vitals').select(['cpu_percent']).where('host_id', '=', pending.hostId).execute();
      return rows.length === 1 && rows[0]!;
    });
    assert.equal(stored.cpu_percent, 42);
    // Text PostgreSQL cannot store (U+0000: SQLSTATE 22021, a 500 before) is refused at the edge as on SQLite.
    const bearer = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    const nul = await httpsJson(appliance.httpPort, appliance.caCert, 'POST', '/api/v1/tokens', { bearer, body: { label: 'lab\u0000el' } });
    assert.equal(nul.status, 400, JSON.stringify(nul.body));
    assert.deepEqual([nul.body.error.code, nul.body.error.details.field], ['ERR_INVALID_ARGUMENT', 'body.label']);
    const host = await appliance.host(pending.hostId);
    assert.equal(host.status, 'online');
    assert.equal(host.cpu_percent, 42, "the host's row shows its heartbeat");
    // The doctor checks the database the configuration names: this server, not a SQLite file.
    const checked = await doctorDatabaseCheck(appliance.dataDir, url);
    assert.equal(checked.status, 'ok', checked.detail);
    assert.match(checked.detail, new RegExp(`reachable; schema version ${MIGRATIONS.length} \\(this build's\\)`));
    assert.ok(!checked.output.includes(cluster.password), 'no password in the report');
  } finally {
    stream?.call.cancel();
    client.close();
    await kysely.destroy();
    await appliance.dispose();
  }
  assert.ok(!`${appliance.process.stdout}${appliance.process.stderr}`.includes(cluster.password), 'no password in the log');
});

test('on PostgreSQL /healthz says whether the instance hears the others: a listening connection lost and refused again shows (still 200), and clears once it is made again', { timeout: 120_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('serve_hearing');
  const appliance = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_DATABASE: url } });
  const admin = postgresKysely(cluster.url, { poolSize: 1 });
  const health = async () => (await httpsJson(appliance.httpPort, appliance.caCert, 'GET', '/healthz')).body;
  try {
    assert.deepEqual((await health()).instances, { listening: true });
    // New connections to its database refused, then its listening connection ended: it cannot listen again yet.
    await sql`ALTER DATABASE serve_hearing ALLOW_CONNECTIONS false`.execute(admin);
    await sql`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'serve_hearing' AND application_name = ${LISTENER_APPLICATION_NAME}`.execute(admin);
    const lost = await waitFor('reported as not listening', async () => {
      const body = await health();
      return body.instances?.listening === false && body;
    }, 20_000);
    assert.equal(lost.status, 'ok', 'an alert in the body, not a 503: it still serves its agents');
    assert.ok(Date.parse(lost.instances.not_listening_since) <= Date.now());
    await sql`ALTER DATABASE serve_hearing ALLOW_CONNECTIONS true`.execute(admin);
    await waitFor('listening again', async () => (await health()).instances?.listening === true, 40_000);
    assert.equal((await health()).instances.not_listening_since, undefined);
  } finally {
    await sql`ALTER DATABASE serve_hearing ALLOW_CONNECTIONS true`.execute(admin).catch(() => undefined);
    await admin.destroy();
    await appliance.dispose();
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
  const checked = await doctorDatabaseCheck(dataDir, `postgres://ctops:${cluster.password}@127.0.0.1:1/nowhere`);
  assert.equal(checked.status, 'fail');
  assert.match(checked.detail, /^postgres:\/\/ctops:\*+@127\.0\.0\.1:1\/nowhere: .*ECONNREFUSED/);
  assert.ok(!checked.output.includes(cluster.password), 'no password in the report');
});

/** `doctor --json` with the database URL in the environment: its database check, and the whole output. */
async function doctorDatabaseCheck(dir: string, databaseUrl: string): Promise<{ status: string; detail: string; output: string }> {
  const result = await run(process.execPath, [APPLIANCE_BIN, 'doctor', '--data-dir', dir, '--json'], { CT_OPS_APPLIANCE_DATABASE: databaseUrl }, 60_000);
  const report = JSON.parse(result.stdout) as { checks: { name: string; status: string; detail: string }[] };
  const database = report.checks.find((check) => check.name === 'database');
  assert.ok(database, result.stdout);
  return { ...database, output: `${result.stdout}${result.stderr}` };
}
