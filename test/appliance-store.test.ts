import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { AgentJwtAuthority } from '../appliance/auth/agent-jwt.ts';
import { RegisterChallenges } from '../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest } from '../appliance/enrolment/register-input.ts';
import { register } from '../appliance/enrolment/register.ts';
import { createEnrolmentToken, tokenState } from '../appliance/enrolment/tokens.ts';
import { ensureJwtSigningKey } from '../appliance/pki/jwt-signing-key.ts';
import { migrate, openDatabase } from '../appliance/store/database.ts';
import { sqliteKysely } from '../appliance/store/dialects.ts';
import { openStores } from '../appliance/store/index.ts';
import { runTransaction } from '../appliance/store/unit-of-work.ts';
import { MIGRATIONS, type Migration } from '../appliance/store/migrations/index.ts';
import { decodedRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-store-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('a database at every earlier schema version migrates to the latest, and migrating again changes nothing', () => {
  const latest = MIGRATIONS.at(-1)!.version;
  for (let start = 0; start < latest; start += 1) {
    const path = join(dir, `from-${start}.db`);
    const db = new Database(path);
    migrate(db, MIGRATIONS.filter((migration) => migration.version <= start));
    db.close();
    const migrated = openDatabase(path);
    assert.equal(migrated.pragma('user_version', { simple: true }), latest);
    assert.equal(migrate(migrated, MIGRATIONS), latest);
    migrated.close();
  }
});

test('migration versions run 1, 2, 3, … without gaps or repeats; a list that does not is refused before anything is applied', () => {
  MIGRATIONS.forEach((migration, index) => assert.equal(migration.version, index + 1, `MIGRATIONS[${index}] (${migration.description})`));
  const [first, second, third] = MIGRATIONS as [Migration, Migration, Migration];
  for (const [label, list] of [['a gap', [first, third]], ['a repeat', [first, second, second]], ['not from 1', [second, third]]] as const) {
    const db = new Database(':memory:');
    assert.throws(() => migrate(db, list), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INTERNAL' && /versions must run 1, 2, 3/.test(error.message), label);
    assert.equal(db.pragma('user_version', { simple: true }), 0, `${label}: nothing applied`);
    db.close();
  }
});

test('migrating leaves no WAL behind: the rebuilt tables are checkpointed into the database file', () => {
  const path = join(dir, 'wal-after-migrate.db');
  const db = openDatabase(path);
  assert.equal(statSync(`${path}-wal`).size, 0);
  db.close();
});

test('the database opens in WAL mode with foreign keys enforced', () => {
  const db = openDatabase(join(dir, 'pragmas.db'));
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  assert.equal(db.pragma('synchronous', { simple: true }), 1);
  db.close();
});

test('a database written by a newer appliance is refused with ERR_SCHEMA_TOO_NEW', () => {
  const path = join(dir, 'newer.db');
  const db = new Database(path);
  db.pragma('user_version = 999');
  db.close();
  assert.throws(() => openDatabase(path), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_SCHEMA_TOO_NEW');
});

test('an expired token is refused as expired, while the key it enrolled keeps registering', async () => {
  const stores = openStores(join(dir, 'expiry.db'));
  const org = await stores.organisations.ensureDefault(Date.now());
  const jwtKey = await ensureJwtSigningKey(dir);
  const jwt = new AgentJwtAuthority(jwtKey, 3600);
  const deps = { stores, jwt, challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log: pino({ level: 'silent' }) };
  const now = Date.now();
  const created = await createEnrolmentToken(stores, org.id, { label: 't', expiresInMs: 60_000, maxUses: 5, autoApprove: true, tags: { site: 'a' }, createdBy: 'test', source: 'admin', metadata: {} }, now);
  const enrolled = newIdentity('expiry-enrolled');
  const first = await register(parseRegisterRequest(decodedRegister(signedRegister(enrolled, created.secret, {}, now))), deps, now);
  assert.equal(first.status, 'AGENT_STATUS_ACTIVE');

  const later = now + 120_000;
  assert.equal(tokenState((await stores.enrolmentTokens.get(created.token.id))!, later), 'expired');
  await assert.rejects(
    register(parseRegisterRequest(decodedRegister(signedRegister(newIdentity('too-late'), created.secret, {}, later))), deps, later),
    (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_TOKEN_EXPIRED',
  );
  const again = await register(parseRegisterRequest(decodedRegister(signedRegister(enrolled, '', {}, later))), deps, later);
  assert.equal(again.status, 'AGENT_STATUS_ACTIVE');
  assert.equal(again.agent_id, first.agent_id);
  assert.deepEqual((await stores.hosts.get(first.agent_id!))!.tags, { site: 'a' });
  assert.equal((await stores.enrolmentTokens.get(created.token.id))!.uses, 1, 'the failed and the repeated registration took no use');
  stores.close();
});


test('vitals older than the retention period are pruned in one pass, newer ones kept', async () => {
  const stores = openStores(join(dir, 'retention.db'));
  const org = await stores.organisations.ensureDefault(Date.now());
  const identity = newIdentity('retention');
  await stores.hosts.insert({
    id: 'hst_retention', orgId: org.id, publicKey: Buffer.from(identity.keyPair.publicKey), hostname: 'retention', machineFingerprint: identity.fingerprint,
    os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 0,
  });
  const hour = 3_600_000;
  const now = 1_000 * hour;
  await stores.transact((tx) =>
    tx.vitals.insertMany(Array.from({ length: 10 }, (_, age) => ({ hostId: 'hst_retention', receivedAt: now - age * hour, agentTimestamp: 0, cpuPercent: age, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1 }))),
  );
  assert.equal(await stores.vitals.prune(now - 4.5 * hour), 5);
  assert.deepEqual((await stores.vitals.recent('hst_retention', 100)).map((sample) => sample.cpuPercent), [0, 1, 2, 3, 4]);
  stores.close();
});

test('the clone check looks hosts up by organisation and fingerprint, not by scanning the organisation', () => {
  const db = openDatabase(join(dir, 'plan.db'));
  const plan = db
    .prepare("EXPLAIN QUERY PLAN SELECT * FROM hosts WHERE org_id = ? AND machine_fingerprint = ? AND approval IN ('pending', 'active') ORDER BY enrolled_at LIMIT 1")
    .all('org', 'fp') as Array<{ detail: string }>;
  assert.match(plan.map((row) => row.detail).join('\n'), /USING INDEX hosts_org_fingerprint \(org_id=\? AND machine_fingerprint=\?\)/);
  db.close();
});

test("the one SQLite connection goes to waiters in arrival order, and a store of the database used inside a transaction fails after the wait bound instead of hanging", async () => {
  const db = openDatabase(join(dir, 'connection-queue.db'));
  const kysely = sqliteKysely(db, { connectionWaitMs: 300 });
  try {
    // 200 transactions and queries at once, each recording its turn: served in the order they asked.
    const served: number[] = [];
    await Promise.all(Array.from({ length: 200 }, (_, index) =>
      index % 2 === 0
        ? kysely.transaction().execute(async (tx) => {
          served.push(index);
          await tx.selectFrom('organisations').selectAll().execute();
        })
        : kysely.selectFrom('organisations').selectAll().execute().then(() => void served.push(index)),
    ));
    assert.equal(served.length, 200);
    assert.deepEqual(served.filter((index) => index % 2 === 0), Array.from({ length: 100 }, (_, n) => 2 * n), 'transactions in arrival order');

    const started = Date.now();
    const misuse = runTransaction(kysely, (tx) => ({ tx }), async () => {
      // The root Kysely, not the transaction's: it waits for the connection this body holds.
      await kysely.selectFrom('organisations').selectAll().execute();
    }, () => undefined);
    await assert.rejects(misuse, (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INTERNAL' && /inside a transaction/.test(error.message));
    assert.ok(Date.now() - started < 5_000, 'failed at the bound, not hung');
    // The connection was given back: the next query runs.
    assert.deepEqual(await kysely.selectFrom('organisations').selectAll().execute(), []);
  } finally {
    await kysely.destroy();
  }
});
