/**
 * Issue 11, a second ingest instance provisioned from the first: `backup` of an appliance serving
 * from PostgreSQL archives the keys and CA the instances share (no database, no server certificate),
 * `restore` of it into an empty directory is the second instance's data directory, and that instance,
 * started on the same database with its own SAN, serves its own server certificate from the shared
 * CA and accepts what the first issued (agent JWTs, the admin CLI credential). Real processes: two
 * appliances, a private PostgreSQL cluster, the CLI.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { TestAppliance } from './helpers/appliance.ts';
import { approveAndRegister, enrolHost } from './helpers/ingest-fixture.ts';
import { HeartbeatStream, ingestClient } from './helpers/ingest-client.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { APPLIANCE_BIN, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

const PASSPHRASE = 'correct horse battery staple';
/** The second instance's own name: the first one's certificate names localhost and 127.0.0.1 (TestAppliance's default). */
const SECOND_SAN = 'ingest-b.test';
/** What every instance on the database shares, so the archive must carry it. */
const SHARED_FILES = ['ca.crt', 'ca.key', 'jwt-signing.key', 'bundle.key', 'bundle.pub', 'admin-cli.token'];
const SECRET_FILES = ['ca.key', 'jwt-signing.key', 'bundle.key', 'admin-cli.token'];
const UNPROVISIONED_WARNING = 'a new CA was made for a database served before: agents trusting the CA of its other instances will not trust this one; provision this data directory from a running instance (docs/operations.md, Adding an ingest instance)';

const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-second-instance-'));
const cleanup: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const step of cleanup.reverse()) await step();
  rmSync(scratch, { recursive: true, force: true });
  await (await sharedPostgres()).stop();
});

/** The appliance CLI with the database setting in the environment, as the unit file gives it to `serve`. */
const cli = (databaseUrl: string, ...args: string[]): ReturnType<typeof run> => run(process.execPath, [APPLIANCE_BIN, ...args], { CT_OPS_APPLIANCE_DATABASE: databaseUrl }, 60_000);
const mode = (path: string): number => statSync(path).mode & 0o777;
/** Run as root, restore into an absent directory must be told who owns it. */
const owner = process.getuid?.() === 0 ? ['--owner', 'root'] : [];

test('a second instance restored from the first one\'s PostgreSQL backup shares its CA and keys, serves its own SAN from that CA, and accepts the first one\'s agent JWT and CLI credential; a wrong passphrase or an altered archive writes nothing; an unprovisioned instance warns', { timeout: 90_000 }, async () => {
  const cluster = await sharedPostgres();
  const url = await cluster.createDatabase('second_instance');
  const first = await TestAppliance.start({ env: { CT_OPS_APPLIANCE_DATABASE: url } });
  cleanup.push(() => first.dispose());

  // Provision: the archive of the first instance (it keeps serving).
  const passphraseFile = join(scratch, 'passphrase');
  writeFileSync(passphraseFile, `${PASSPHRASE}\n`, { mode: 0o600 });
  const archive = join(scratch, 'instance.backup');
  const backup = await cli(url, 'backup', '--data-dir', first.dataDir, '--out', archive, '--passphrase-file', passphraseFile, '--json');
  assert.equal(backup.code, 0, backup.stderr);
  const summary = JSON.parse(backup.stdout) as { encrypted: boolean; database: string; schema_version: number | null; files: string[] };
  assert.equal(summary.encrypted, true);
  assert.equal(summary.database, 'postgres');
  assert.equal(summary.schema_version, null, 'no database in the archive');
  for (const name of SHARED_FILES) assert.ok(summary.files.includes(`data/${name}`), `data/${name} is in the archive`);
  for (const name of ['server.crt', 'server.key', 'appliance.db', 'appliance.json']) assert.ok(!summary.files.includes(`data/${name}`), `data/${name} is not: it is the first instance's own`);
  assert.equal(mode(archive), 0o600);

  // Refusals first, into the directory the restore will make: each leaves nothing behind.
  const secondDir = join(scratch, 'second');
  const nothingWritten = (what: string): void => {
    assert.equal(existsSync(secondDir), false, `${what}: no data directory`);
    assert.deepEqual(readdirSync(scratch).filter((name) => name.startsWith('.')), [], `${what}: no work directory left beside it`);
  };
  const wrongPassphrase = join(scratch, 'wrong-passphrase');
  writeFileSync(wrongPassphrase, 'not the passphrase at all\n');
  const wrong = await cli(url, 'restore', archive, '--data-dir', secondDir, '--passphrase-file', wrongPassphrase, ...owner);
  assert.equal(wrong.code, 77, wrong.stderr);
  assert.match(wrong.stderr, /ERR_BACKUP_PASSPHRASE_WRONG/);
  nothingWritten('a wrong passphrase');
  const altered = join(scratch, 'altered.backup');
  const bytes = readFileSync(archive);
  bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0x01;
  writeFileSync(altered, bytes);
  const damaged = await cli(url, 'restore', altered, '--data-dir', secondDir, '--passphrase-file', passphraseFile, ...owner);
  assert.equal(damaged.code, 65, damaged.stderr);
  assert.match(damaged.stderr, /ERR_BACKUP_DAMAGED/);
  nothingWritten('an altered archive');

  const restored = await cli(url, 'restore', archive, '--data-dir', secondDir, '--passphrase-file', passphraseFile, '--json', ...owner);
  assert.equal(restored.code, 0, restored.stderr);
  const restoredSummary = JSON.parse(restored.stdout) as { database: string; ca_fingerprint: string };
  assert.equal(restoredSummary.database, 'postgres');
  assert.doesNotMatch(restored.stderr, /Warning/, 'the database setting agrees with the archive');
  // Restored where no database setting is given, the archive's PostgreSQL is named: that instance would start on a new SQLite file.
  const unconfigured = await run(process.execPath, [APPLIANCE_BIN, 'restore', archive, '--data-dir', join(scratch, 'unconfigured'), '--passphrase-file', passphraseFile, ...owner], {}, 60_000);
  assert.equal(unconfigured.code, 0, unconfigured.stderr);
  assert.match(unconfigured.stderr, /Warning: the backup is of an appliance on PostgreSQL, but the settings this command read .* name no PostgreSQL database/);
  assert.equal(mode(secondDir), 0o700);
  for (const name of SHARED_FILES) assert.deepEqual(readFileSync(join(secondDir, name)), readFileSync(join(first.dataDir, name)), `${name} is the first instance's`);
  for (const name of SECRET_FILES) assert.equal(mode(join(secondDir, name)), 0o600, `${name} is 0600`);
  assert.equal(existsSync(join(secondDir, 'server.key')), false, 'no server key until the instance issues its own');

  // The second instance: same database, its own data directory, ports and SAN.
  const second = await TestAppliance.start({ dataDir: secondDir, sans: [SECOND_SAN], env: { CT_OPS_APPLIANCE_DATABASE: url } });
  cleanup.push(() => second.dispose());
  const [firstStart, secondStart] = [first, second].map((appliance) => appliance.process.logged('appliance started')[0]!);
  assert.equal(secondStart.ca_fingerprint, firstStart.ca_fingerprint, 'one CA');
  assert.equal(restoredSummary.ca_fingerprint, firstStart.ca_fingerprint);
  assert.equal(secondStart.bundle_key_id, firstStart.bundle_key_id, 'one bundle signing key');
  assert.equal(secondStart.jwt_kid, firstStart.jwt_kid, 'one JWT signing key');
  const firstAdminBanner = /First start: an admin was created/;
  assert.match(first.process.stdout + first.process.stderr, firstAdminBanner);
  assert.doesNotMatch(second.process.stdout + second.process.stderr, firstAdminBanner, 'no first admin of its own: the database has one');
  assert.deepEqual(readFileSync(join(secondDir, 'admin-cli.token')), readFileSync(join(first.dataDir, 'admin-cli.token')), 'the restored CLI credential is kept');

  const ca = new X509Certificate(first.caCert);
  const secondCert = new X509Certificate(readFileSync(join(secondDir, 'server.crt')));
  assert.equal(secondCert.subjectAltName, `DNS:${SECOND_SAN}`, "the second instance's certificate names its SAN alone, not the first one's");
  assert.ok(secondCert.checkIssued(ca) && secondCert.verify(ca.publicKey), 'issued and signed by the shared CA');
  assert.notEqual(secondCert.fingerprint256, new X509Certificate(readFileSync(join(first.dataDir, 'server.crt'))).fingerprint256);
  assert.notDeepEqual(readFileSync(join(secondDir, 'server.key')), readFileSync(join(first.dataDir, 'server.key')), 'its own server key');
  assert.equal(mode(join(secondDir, 'server.key')), 0o600);

  // An agent enrolled and approved through the first instance streams to the second with the first one's JWT.
  const firstClient = ingestClient(first.address, first.caCert);
  const secondClient = ingestClient(`127.0.0.1:${second.grpcPort}`, first.caCert, SECOND_SAN);
  let stream: HeartbeatStream | undefined;
  try {
    const pending = await enrolHost(first, firstClient, { hostname: 'roams-between-instances', autoApprove: false });
    stream = new HeartbeatStream(secondClient, await approveAndRegister(first, firstClient, pending));
    stream.send(pending.hostId, 1, { cpu_percent: 17 });
    await waitFor('the second instance acks the heartbeat', () => stream!.acks().includes(1));
    // The restored admin-cli.token is a credential in the database: the second instance's CLI works with it.
    const shown = await second.cliJson<{ hostname: string; cpu_percent: number }>('hosts', 'show', pending.hostId);
    assert.equal(shown.hostname, 'roams-between-instances');
    await waitFor('the heartbeat stored through the second instance', async () => (await first.host(pending.hostId)).cpu_percent === 17);
  } finally {
    stream?.call.cancel();
    firstClient.close();
    secondClient.close();
  }
  // An instance started on the database with an empty data directory makes a CA of its own, which no agent trusts: said at once.
  const unprovisioned = await TestAppliance.start({ sans: ['ingest-c.test'], env: { CT_OPS_APPLIANCE_DATABASE: url } });
  cleanup.push(() => unprovisioned.dispose());
  const [warning] = unprovisioned.process.logged(UNPROVISIONED_WARNING);
  assert.ok(warning, 'the unprovisioned instance warns');
  assert.notEqual(warning.ca_fingerprint, firstStart.ca_fingerprint);
  for (const appliance of [first, second]) assert.equal(appliance.process.logged(UNPROVISIONED_WARNING).length, 0);
  await unprovisioned.stop();

  for (const output of [backup, restored, wrong, damaged]) assert.ok(!`${output.stdout}${output.stderr}`.includes(PASSPHRASE), 'no passphrase in the output');
  const keyText = readFileSync(join(first.dataDir, 'ca.key'), 'utf8').split('\n')[1]!;
  for (const appliance of [first, second]) assert.ok(!`${appliance.process.stdout}${appliance.process.stderr}`.includes(keyText), 'no private key in a log');
});
