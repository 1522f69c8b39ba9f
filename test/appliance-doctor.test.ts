/**
 * `ct-ops-appliance doctor` against a real data directory of a real appliance: all ok while it
 * runs and after it stopped; each kind of damage (a key readable by others, an open data
 * directory, a damaged database, an expired certificate, a clock before the build, a port held by
 * another program) fails its own check and the command exits 69 (ERR_DOCTOR_FAILED). Where the
 * service account exists, a data directory and secrets owned by anyone else (root) fail.
 */
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, closeSync, cpSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { STATUS } from '../common/errors.ts';
import { runDoctor, SERVICE_ACCOUNT } from '../appliance/health/doctor.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { shiftedClockEnv } from './helpers/faketime.ts';
import { APPLIANCE_BIN, run } from './helpers/processes.ts';

interface DoctorReport {
  ok: boolean;
  checks: Array<{ name: string; status: 'ok' | 'warn' | 'fail'; detail: string }>;
}

const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-doctor-'));
const dataDir = join(scratch, 'data');
let appliance: TestAppliance;

/** A configuration naming the appliance's data directory and ports, as /etc/ct-ops/appliance.toml does for an installed one. */
function configFor(dir: string, ports = { http: appliance.httpPort, grpc: appliance.grpcPort }): string {
  const path = join(scratch, `${dir.replaceAll('/', '_')}.toml`);
  writeFileSync(path, `data_dir = "${dir}"\nlisten = "127.0.0.1"\nhttp_port = ${ports.http}\ngrpc_port = ${ports.grpc}\nsans = ["localhost", "127.0.0.1"]\n`);
  return path;
}

async function doctor(config: string, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; report: DoctorReport; stderr: string }> {
  const result = await run(process.execPath, [APPLIANCE_BIN, 'doctor', '--config', config, '--json', ...extra], env, 60_000);
  return { code: result.code, report: JSON.parse(result.stdout) as DoctorReport, stderr: result.stderr };
}

function statusOf(report: DoctorReport, name: string): string | undefined {
  return report.checks.find((check) => check.name === name)?.status;
}

/** A copy of the stopped appliance's data directory, damaged by `damage`. */
function damagedCopy(name: string, damage: (dir: string) => void): string {
  const copy = join(scratch, name);
  cpSync(dataDir, copy, { recursive: true });
  damage(copy);
  return copy;
}

const fileDigest = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

const DOCTOR_FAILED_EXIT = STATUS.ERR_DOCTOR_FAILED.exit;

before(async () => {
  appliance = await TestAppliance.start({ dataDir });
});
after(async () => {
  await appliance.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

describe('ct-ops-appliance doctor', () => {
  test('on a running appliance every check passes, /healthz included, and doctor exits 0', async () => {
    const { code, report, stderr } = await doctor(configFor(dataDir), ['--wait-healthy', '30']);
    assert.equal(code, 0, stderr);
    assert.equal(report.ok, true);
    assert.deepEqual(report.checks.filter((check) => check.status !== 'ok'), []);
    for (const name of ['data-dir', 'file ca.key', 'file server.key', 'file jwt-signing.key', 'file bundle.key', 'file admin-cli.token', 'server certificate names', 'database', 'ports', 'healthz']) {
      assert.equal(statusOf(report, name), 'ok', name);
    }
  });

  test('a port held by another program fails the ports check', async () => {
    // A listener that is not the appliance: it accepts and hangs up, so no TLS handshake with the appliance CA completes.
    const squatter: Server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve) => squatter.listen(0, '127.0.0.1', resolve));
    try {
      const port = (squatter.address() as { port: number }).port;
      const { code, report } = await doctor(configFor(dataDir, { http: appliance.httpPort, grpc: port }));
      assert.equal(code, DOCTOR_FAILED_EXIT);
      assert.equal(statusOf(report, 'ports'), 'fail');
      assert.match(report.checks.find((check) => check.name === 'ports')!.detail, new RegExp(`port ${port} is held by another program`));
    } finally {
      squatter.close();
    }
  });

  test('once the appliance stopped, free ports are fine, but --wait-healthy fails on the silence', async () => {
    await appliance.stop();
    const stopped = await doctor(configFor(dataDir));
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.equal(statusOf(stopped.report, 'ports'), 'ok');
    assert.equal(statusOf(stopped.report, 'healthz'), 'warn');
    const waited = await doctor(configFor(dataDir), ['--wait-healthy', '1']);
    assert.equal(waited.code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(waited.report, 'healthz'), 'fail');
    assert.match(waited.stderr, /ERR_DOCTOR_FAILED/);
  });

  test('a private key readable by others fails its file check', async () => {
    const dir = damagedCopy('open-key', (copy) => chmodSync(join(copy, 'server.key'), 0o644));
    const { code, report } = await doctor(configFor(dir));
    assert.equal(code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(report, 'file server.key'), 'fail');
    assert.equal(statusOf(report, 'file ca.key'), 'ok');
  });

  test('a data directory others can enter fails the data-dir check', async () => {
    const dir = damagedCopy('open-dir', (copy) => chmodSync(copy, 0o755));
    const { code, report } = await doctor(configFor(dir));
    assert.equal(code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(report, 'data-dir'), 'fail');
  });

  test('where the service account exists, a data directory and secrets owned by root fail; chowned to the account, they pass', async () => {
    // An account database naming the service account, as on an installed appliance (the test runs as root).
    const passwdFile = join(scratch, 'passwd');
    const serviceUid = 4242;
    writeFileSync(passwdFile, `root:x:0:0:root:/root:/bin/sh\n${SERVICE_ACCOUNT}:x:${serviceUid}:${serviceUid}::/var/lib/ct-ops:/usr/sbin/nologin\n`);
    const dir = damagedCopy('root-owned', () => undefined);
    const inputs = { dataDir: dir, database: { kind: 'sqlite' } as const, listen: '127.0.0.1', httpPort: appliance.httpPort, grpcPort: appliance.grpcPort, sans: [], now: new Date(), buildFile: APPLIANCE_BIN, expectRunning: false, passwdFile };
    const rootOwned = await runDoctor(inputs);
    const byName = (checks: typeof rootOwned, name: string) => checks.find((check) => check.name === name)!;
    assert.equal(byName(rootOwned, 'data-dir').status, 'fail');
    assert.match(byName(rootOwned, 'data-dir').detail, new RegExp(`owned by uid 0, not by the service account ${SERVICE_ACCOUNT} \\(uid ${serviceUid}\\)`));
    for (const name of ['file ca.key', 'file admin-cli.token']) assert.equal(byName(rootOwned, name).status, 'fail', name);

    for (const path of [dir, ...['ca.key', 'server.key', 'jwt-signing.key', 'bundle.key', 'admin-cli.token'].map((name) => join(dir, name))]) chownSync(path, serviceUid, serviceUid);
    const owned = await runDoctor(inputs);
    for (const name of ['data-dir', 'file ca.key', 'file server.key', 'file jwt-signing.key', 'file bundle.key', 'file admin-cli.token', 'file initial-admin-password']) assert.equal(byName(owned, name).status, 'ok', name);
  });

  test('a damaged database file fails the database check, and doctor leaves the file as it found it', async () => {
    const dir = damagedCopy('bad-db', (copy) => {
      // Garbage over the second page onwards: the header still says SQLite, the b-tree pages are noise.
      const fd = openSync(join(copy, 'appliance.db'), 'r+');
      writeSync(fd, Buffer.alloc(16_384, 0xa5), 0, 16_384, 4096);
      closeSync(fd);
    });
    const before = fileDigest(join(dir, 'appliance.db'));
    const { code, report } = await doctor(configFor(dir));
    assert.equal(code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(report, 'database'), 'fail');
    assert.equal(fileDigest(join(dir, 'appliance.db')), before);
  });

  test('eleven years on, the expired certificates fail; a clock before the build fails the clock check', async () => {
    const future = await doctor(configFor(dataDir), [], shiftedClockEnv({ offset: '+4018d' }));
    assert.equal(future.code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(future.report, 'ca certificate'), 'fail');
    assert.equal(statusOf(future.report, 'server certificate'), 'fail');
    const past = await doctor(configFor(dataDir), [], shiftedClockEnv({ offset: '-3650d' }));
    assert.equal(past.code, DOCTOR_FAILED_EXIT);
    assert.equal(statusOf(past.report, 'clock'), 'fail');
  });
});
