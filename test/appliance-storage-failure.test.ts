import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import type { IngestServiceClient } from '../common/proto.ts';
import { storageFailure } from '../appliance/store/storage-failure.ts';
import { TestAgent } from './helpers/agent.ts';
import { httpsJson } from './helpers/https.ts';
import { callRegister, HeartbeatStream, ingestClient, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { chunksOf, packages, submitScan } from './helpers/inventory.ts';
import { freePort } from './helpers/ports.ts';
import { APPLIANCE_BIN, LoggedProcess } from './helpers/processes.ts';
import { TmpfsVolume, tmpfsUnavailable } from './helpers/tmpfs-volume.ts';
import { waitFor } from './helpers/wait.ts';

type TaskJson = { id: string; state: string; error_code: string | null };

/** True when a listener can bind the port: nothing (no leftover appliance listener) holds it. */
async function portIsFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function startedPorts(appliance: LoggedProcess): Promise<{ grpc: number; http: number }> {
  const started = await appliance.waitForLog('appliance started', {}, 30_000);
  return { grpc: started.grpc_port as number, http: started.http_port as number };
}

/** A start that must fail: it exits (not hangs) within the limit, with this error code on stderr, and leaves both ports free. */
async function assertStartRefused(start: (ports: { grpc: number; http: number }) => LoggedProcess, code: string): Promise<{ code: number | null }> {
  const ports = { grpc: await freePort(), http: await freePort() };
  const appliance = start(ports);
  const timer = setTimeout(() => appliance.child.kill('SIGKILL'), 30_000);
  const exited = await appliance.exited;
  clearTimeout(timer);
  assert.equal(exited.signal, null, `the failed start must exit by itself, not hang listening; stderr: ${appliance.stderr}`);
  assert.notEqual(exited.code, 0);
  assert.match(appliance.stderr, new RegExp(`ct-ops-appliance: ${code}: `));
  assert.equal(appliance.logged('appliance started').length, 0);
  assert.ok(await portIsFree(ports.grpc), 'gRPC port released');
  assert.ok(await portIsFree(ports.http), 'HTTPS port released');
  return exited;
}

describe('storage failures (SQLite error mapping)', () => {
  test('SQLite storage codes, extended ones included, map to the ERR_STORAGE_* codes; a constraint is not a storage failure', () => {
    const mapped = (code: string) => storageFailure(new Database.SqliteError('boom', code))?.code;
    assert.equal(mapped('SQLITE_FULL'), 'ERR_STORAGE_FULL');
    assert.equal(mapped('SQLITE_IOERR_WRITE'), 'ERR_STORAGE_UNAVAILABLE');
    assert.equal(mapped('SQLITE_IOERR_FSYNC'), 'ERR_STORAGE_UNAVAILABLE');
    assert.equal(mapped('SQLITE_IOERR_SHMSIZE'), 'ERR_STORAGE_FULL', 'the WAL index could not grow: out of space');
    assert.equal(mapped('SQLITE_READONLY'), 'ERR_STORAGE_UNAVAILABLE');
    assert.equal(mapped('SQLITE_READONLY_DBMOVED'), 'ERR_STORAGE_UNAVAILABLE');
    assert.equal(mapped('SQLITE_BUSY_SNAPSHOT'), 'ERR_STORAGE_UNAVAILABLE');
    assert.equal(mapped('SQLITE_CORRUPT'), 'ERR_STORAGE_CORRUPT');
    assert.equal(mapped('SQLITE_NOTADB'), 'ERR_STORAGE_CORRUPT');
    assert.equal(mapped('SQLITE_CONSTRAINT_UNIQUE'), undefined);
    assert.equal(storageFailure(new Error('SQLITE_FULL')), undefined, 'only a real SqliteError is mapped');
    assert.equal(storageFailure(new Database.SqliteError('boom', 'SQLITE_FULL'))?.details.sqlite_code, 'SQLITE_FULL');
  });
});

test('a start that fails after it began listening (appliance.json cannot be written) closes its listeners and exits non-zero', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-appliance-'));
  try {
    // A non-empty directory where the endpoint file goes: the rename into place fails.
    mkdirSync(join(dataDir, 'appliance.json', 'occupied'), { recursive: true });
    const exited = await assertStartRefused(
      (ports) => new LoggedProcess(process.execPath, [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', String(ports.grpc), '--http-port', String(ports.http), '--san', 'localhost']),
      'ERR_DATA_DIR_UNUSABLE',
    );
    assert.equal(exited.code, 73);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
});

describe('storage failures on a 20 MB tmpfs in a private mount namespace', { skip: tmpfsUnavailable() }, () => {
  let volume: TmpfsVolume;
  let appliance: LoggedProcess;
  let ports: { grpc: number; http: number };
  let ca: string;
  let client: IngestServiceClient;
  let hostId: string;
  let jwt: string;
  let taskId: string;
  /**
   * A read transaction held on the database until the stop test: the WAL cannot restart from its start
   * under it, so every write needs new space, which the full volume refuses. Without it the appliance's
   * checkpoint thread (decision 155) lets a write reuse the space of a WAL it had copied, and a full
   * volume refuses nothing that fits there.
   */
  let reader: LoggedProcess;
  const streams: HeartbeatStream[] = [];
  const open = (): HeartbeatStream => {
    const stream = new HeartbeatStream(client, jwt);
    streams.push(stream);
    return stream;
  };
  const healthz = () => httpsJson(ports.http, ca, 'GET', '/healthz');

  before(async () => {
    volume = await TmpfsVolume.create(20);
    appliance = volume.startAppliance({ grpc: 0, http: 0 });
    ports = await startedPorts(appliance);
    ca = await volume.check('cat', join(volume.dir, 'ca.crt'));
    client = ingestClient(`localhost:${ports.grpc}`, ca);
    const { token } = await volume.cliJson<{ token: string }>('tokens', 'create', '--auto-approve');
    const registered = await callRegister(client, signedRegister(newIdentity('full-disk-host'), token));
    assert.ok(registered.ok, JSON.stringify(registered));
    hostId = registered.value.agent_id;
    jwt = registered.value.jwt;
    const hold = [
      'import sqlite3, sys, time',
      "db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True, isolation_level=None)",
      "db.execute('BEGIN')",
      "print('pinned', db.execute('SELECT count(*) FROM hosts').fetchone()[0], flush=True)",
      'time.sleep(900)',
    ].join('\n');
    const [command, args] = volume.enter('python3', '-c', hold, join(volume.dir, 'appliance.db'));
    reader = new LoggedProcess(command, args);
    await waitFor('the reader holds its snapshot', () => reader.stdout.includes('pinned'));
  });

  after(async () => {
    for (const stream of streams) stream.call.cancel();
    client?.close();
    await reader?.stop('SIGKILL');
    await appliance?.stop('SIGKILL');
    await volume?.dispose();
  });

  test('while the volume is full: a report is not acknowledged (stream ends UNAVAILABLE ERR_STORAGE_FULL), ending streams does not crash the appliance, /healthz answers 503 degraded, an admin write answers ERR_STORAGE_FULL', async () => {
    const first = open();
    first.send(hostId, 1);
    await waitFor('first ack', () => first.acks().includes(1));
    taskId = (await volume.cliJson<TaskJson>('hosts', 'reload-config', hostId)).id;
    await waitFor('task pushed', () => first.received.some((message) => message.task?.task_id === taskId));
    assert.equal((await healthz()).status, 200);

    await volume.fill();
    first.send(hostId, 2, { task_updates: [{ task_id: taskId, phase: 'TASK_PHASE_SUCCEEDED', message: 'reloaded' }] });
    const ended = await first.ended;
    assert.equal(ended.code, 14, 'UNAVAILABLE: the agent keeps the report and reconnects');
    assert.match(ended.details, /^ERR_STORAGE_FULL: /);
    assert.ok(!first.acks().includes(2), 'the heartbeat carrying the refused report was not acknowledged');
    await appliance.waitForLog('task report not stored', { host_id: hostId, code: 'ERR_STORAGE_FULL' });

    const health = await healthz();
    assert.equal(health.status, 503);
    assert.equal(health.body.status, 'degraded');
    assert.equal(health.body.reason, 'ERR_STORAGE_FULL');

    // The reproduction: a stream that ends while the volume is full (the offline
    // callback cannot record the disconnect) must not take the appliance down.
    // One vitals sample per interval is stored (5 s here): wait until this one is due, so its write fails too.
    await sleep(5_000);
    const second = open();
    second.send(hostId, 1);
    await waitFor('ack on a stream opened while full', () => second.acks().includes(1));
    await appliance.waitForLog('vitals samples dropped: storage failing', { code: 'ERR_STORAGE_FULL' });
    second.call.end();
    await second.ended;
    await appliance.waitForLog('host offline not recorded', { code: 'ERR_STORAGE_FULL' });

    // The agent re-sends on each new stream; while the volume stays full the answer stays the same.
    const third = open();
    third.send(hostId, 1, { task_updates: [{ task_id: taskId, phase: 'TASK_PHASE_SUCCEEDED', message: 'reloaded' }] });
    assert.match((await third.ended).details, /^ERR_STORAGE_FULL: /);
    assert.deepEqual(third.acks(), []);

    const admin = await volume.run(process.execPath, APPLIANCE_BIN, 'tokens', 'create', '--data-dir', volume.dir);
    assert.match(admin.stderr, /ERR_STORAGE_FULL/, 'an admin write is refused with the storage code, not ERR_INTERNAL');
    assert.equal(admin.code, 75);
    // Inventory writes go through the same boundary: the agent is told UNAVAILABLE (try again), not INTERNAL.
    const scan = await submitScan(client, jwt, chunksOf(hostId, `scn_${'a'.repeat(24)}`, packages(0, 300)));
    assert.deepEqual(scan.ok ? 'stored' : [scan.code, scan.details.split(':')[0]], [14, 'ERR_STORAGE_FULL'], 'an inventory chunk refused by the full volume');
    await appliance.waitForLog('inventory chunk not stored', { host_id: hostId, code: 'ERR_STORAGE_FULL' });
    assert.ok(appliance.running, 'the appliance is still running');
    assert.equal((await volume.cliJson<TaskJson>('tasks', 'show', taskId)).state, 'sent', 'reads still work; the report was not stored');
  });

  test('once space returns, /healthz recovers by itself and the re-sent report ends the task SUCCEEDED', async () => {
    await volume.free();
    await waitFor('healthz 200', async () => (await healthz()).status === 200, 15_000, 250);
    await appliance.waitForLog('storage recovered: writes succeed again');
    const resent = open();
    resent.send(hostId, 1, { task_updates: [{ task_id: taskId, phase: 'TASK_PHASE_SUCCEEDED', message: 'reloaded' }] });
    await waitFor('ack of the re-sent report', () => resent.acks().includes(1));
    const task = await volume.cliJson<TaskJson>('tasks', 'show', taskId);
    assert.equal(task.state, 'succeeded');
  });

  test('the real agent keeps the reports the full volume refused and delivers them once space returns: the task ends SUCCEEDED', async () => {
    const caDir = mkdtempSync(join(tmpdir(), 'ct-ops-ca-'));
    writeFileSync(join(caDir, 'ca.crt'), ca);
    const { token } = await volume.cliJson<{ token: string }>('tokens', 'create', '--auto-approve');
    const agent = new TestAgent({ address: `localhost:${ports.grpc}`, caCertFile: join(caDir, 'ca.crt'), orgToken: token, intervalSecs: 5 });
    try {
      const proc = agent.start();
      await proc.waitForLog('heartbeat acknowledged', {}, 30_000);
      const agentId = agent.state().agent_id;
      // Paused, the agent cannot report before the volume is full; the task waits in its socket.
      proc.child.kill('SIGSTOP');
      let queued: TaskJson;
      try {
        queued = await volume.cliJson<TaskJson>('hosts', 'reload-config', agentId);
        const id = queued.id;
        // Sent after the task committed (TaskService.create does not wait for the peer).
        await waitFor('the task sent to the paused agent', async () => (await volume.cliJson<TaskJson>('tasks', 'show', id)).state === 'sent', 15_000);
        await volume.fill();
      } finally {
        proc.child.kill('SIGCONT');
      }
      try {
        await proc.waitForLog('heartbeat stream closed', { error_code: 'ERR_STORAGE_FULL' }, 30_000);
        assert.equal((await volume.cliJson<TaskJson>('tasks', 'show', queued.id)).state, 'sent', 'nothing of the reports was stored');
      } finally {
        await volume.free();
      }
      // The agent reconnects on its backoff schedule (1, 2, 4, 8 … s) and sends the kept reports first.
      await waitFor('task succeeded', async () => (await volume.cliJson<TaskJson>('tasks', 'show', queued.id)).state === 'succeeded', 60_000, 1_000);
      assert.ok(appliance.running);
    } finally {
      await agent.dispose();
      rmSync(caDir, { recursive: true, force: true });
    }
  });

  test('a host that falls silent while the volume is full goes offline by its deadline timer without crashing the appliance', async () => {
    const stream = open();
    stream.send(hostId, 1);
    await waitFor('ack', () => stream.acks().includes(1));
    const notRecordedBefore = appliance.logged('host offline not recorded').length;
    await volume.fill();
    try {
      // Silence: the presence deadline (2 × the 5 s interval) fires in a timer and cannot record the disconnect.
      const ended = await stream.ended;
      assert.equal(ended.code, 0);
      await appliance.waitForLog('host offline', { host_id: hostId, reason: 'heartbeat-timeout' });
      await appliance.waitForLog('host offline not recorded', { code: 'ERR_STORAGE_FULL' }, 15_000, notRecordedBefore + 1);
      assert.ok(appliance.running, 'the appliance is still running');
      assert.equal((await healthz()).body.reason, 'ERR_STORAGE_FULL');
    } finally {
      await volume.free();
    }
    await waitFor('healthz 200', async () => (await healthz()).status === 200, 15_000, 250);
  });

  test('SIGTERM stops gracefully: exit 0, the last vitals flushed, the WAL checkpointed, integrity_check ok', async () => {
    // The appliance's connection must be the last to close, to checkpoint the WAL and remove it.
    await reader.stop('SIGKILL');
    const last = open();
    last.send(hostId, 1, { cpu_percent: 77.25 });
    await waitFor('ack', () => last.acks().includes(1), 15_000, 10);
    // At once, inside the writer's 1 s batching window: only the stop's own flush can store it.
    const exited = await appliance.stop('SIGTERM', 20_000);
    assert.deepEqual(exited, { code: 0, signal: null }, appliance.stderr);
    await appliance.waitForLog('appliance stopped');
    const files = await volume.check('ls', '-a', volume.dir);
    assert.ok(!files.split('\n').includes('appliance.db-wal'), `the database was closed and its WAL checkpointed: ${files}`);
    // The appliance has stopped: nothing else holds the database now.
    const script = [
      'import sqlite3, sys',
      'db = sqlite3.connect(sys.argv[1])',
      'print(db.execute("PRAGMA integrity_check").fetchone()[0])',
      'print(db.execute("SELECT cpu_percent FROM host_vitals WHERE host_id = ? ORDER BY received_at DESC LIMIT 1", (sys.argv[2],)).fetchone()[0])',
    ].join('\n');
    const [integrity, lastCpu] = (await volume.check('python3', '-c', script, join(volume.dir, 'appliance.db'), hostId)).trim().split('\n');
    assert.equal(integrity, 'ok');
    assert.equal(Number(lastCpu), 77.25, 'the heartbeat acknowledged just before SIGTERM was flushed');
  });

  test('a start on a full volume exits 75 with ERR_STORAGE_FULL and leaves no listener behind', async () => {
    await volume.fill();
    try {
      const exited = await assertStartRefused((ports) => volume.startAppliance(ports), 'ERR_STORAGE_FULL');
      assert.equal(exited.code, 75);
    } finally {
      await volume.free();
    }
  });
});
