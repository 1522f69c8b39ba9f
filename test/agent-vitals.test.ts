import assert from 'node:assert/strict';
import type { CpuInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { test } from 'node:test';
import { TaskUpdateQueue } from '../agent/heartbeat/task-updates.ts';
import { MESSAGE_LIMIT_CHARS } from '../agent/tasks/runner.ts';
import { MAX_HEARTBEAT_REQUEST_BYTES, MAX_TASK_UPDATES_PER_HEARTBEAT } from '../common/heartbeat-limits.ts';
import { loadIngestProto } from '../common/proto.ts';
import { buildHeartbeat } from '../agent/heartbeat/request.ts';
import { cpuPercentBetween, createCpuSampler } from '../agent/vitals/cpu.ts';
import { diskPercent, diskPercentOf } from '../agent/vitals/disk.ts';
import { memAvailableBytes, memoryPercent } from '../agent/vitals/memory.ts';
import { createVitalsSampler } from '../agent/vitals/sample.ts';

function cpu(user: number, idle: number): CpuInfo {
  return { model: 'test', speed: 1, times: { user, nice: 0, sys: 0, idle, irq: 0 } };
}

test('CPU use is the busy share of the time between two samples, across all cores', () => {
  const samples = [[cpu(100, 900), cpu(100, 900)], [cpu(150, 950), cpu(200, 900)], [cpu(150, 950), cpu(200, 900)]];
  const sampler = createCpuSampler(() => samples.shift() ?? []);
  assert.equal(sampler(), 75, '150 busy of 200 elapsed');
  assert.equal(sampler(), 0, 'no time elapsed: 0, not NaN');
  assert.equal(cpuPercentBetween({ busy: 0, total: 0 }, { busy: 5, total: 10 }), 50);
});

test('disk use is computed like df: reserved blocks count neither as used nor available', () => {
  assert.equal(diskPercentOf({ blocks: 1000, bfree: 300, bavail: 200 }), (700 / 900) * 100);
  assert.equal(diskPercentOf({ blocks: 0, bfree: 0, bavail: 0 }), 0);
  const real = diskPercent(tmpdir());
  assert.ok(real > 0 && real <= 100, String(real));
  assert.equal(diskPercent('/definitely/not/here'), 0);
});

test('MemAvailable is read from /proc/meminfo text', () => {
  assert.equal(memAvailableBytes('MemTotal: 2048 kB\nMemFree: 100 kB\nMemAvailable:    1024 kB\n'), 1024 * 1024);
  assert.equal(memAvailableBytes('MemTotal: 2048 kB\n'), undefined);
  const percent = memoryPercent();
  assert.ok(percent > 0 && percent < 100, String(percent));
});

test('a vitals sample has plausible values', () => {
  const vitals = createVitalsSampler(tmpdir())();
  for (const value of [vitals.cpuPercent, vitals.memoryPercent, vitals.diskPercent]) assert.ok(value >= 0 && value <= 100);
  assert.ok(Number.isInteger(vitals.uptimeSeconds) && vitals.uptimeSeconds > 0);
});

test('a heartbeat carries every field with the timestamp in whole seconds and in ms', () => {
  const request = buildHeartbeat({
    agentId: 'hst_1',
    sequence: 3,
    intervalSecs: 30,
    agentVersion: '0.1.0',
    nowMs: 1_700_000_000_999,
    vitals: { cpuPercent: 1, memoryPercent: 2, diskPercent: 3, uptimeSeconds: 4 },
    taskUpdates: [{ task_id: 'tsk_c', phase: 'TASK_PHASE_SUCCEEDED' }],
    trustGeneration: 2,
    trustDigest: Buffer.alloc(32, 7),
  });
  assert.deepEqual(request, {
    agent_id: 'hst_1', cpu_percent: 1, memory_percent: 2, disk_percent: 3, uptime_seconds: 4, timestamp_unix: 1_700_000_000,
    timestamp_unix_ms: 1_700_000_000_999, sequence: 3, interval_secs: 30, agent_version: '0.1.0', task_updates: [{ task_id: 'tsk_c', phase: 'TASK_PHASE_SUCCEEDED' }],
    trust_generation: 2, trust_digest: Buffer.alloc(32, 7),
  });
});

test('task reports leave the queue only when the heartbeat carrying them is acked', () => {
  const queue = new TaskUpdateQueue();
  const report = (task_id: string) => ({ task_id, phase: 'TASK_PHASE_RUNNING' as const });
  queue.add(report('a'));
  assert.deepEqual(queue.takeFor(1).map((update) => update.task_id), ['a']);
  queue.add(report('b'));
  assert.deepEqual(queue.takeFor(2).map((update) => update.task_id), ['b']);
  assert.deepEqual(queue.takeFor(3), []);
  assert.deepEqual(queue.acknowledge(1).map((update) => update.task_id), ['a'], 'the reports the acked heartbeat carried');
  assert.equal(queue.size, 1);
  queue.add(report('c'));
  queue.requeueUnacknowledged();
  assert.deepEqual(queue.takeFor(1).map((update) => update.task_id), ['b', 'c'], 'unacked reports go first, in order');
  queue.acknowledge(5);
  assert.equal(queue.size, 0);
});

test('a heartbeat carries at most 64 task reports: 100 queued go out as 64 then 36, and acks and requeues keep their order', () => {
  assert.equal(MAX_TASK_UPDATES_PER_HEARTBEAT, 64);
  const queue = new TaskUpdateQueue();
  const ids = Array.from({ length: 100 }, (_, index) => `tsk_${index}`);
  for (const task_id of ids) queue.add({ task_id, phase: 'TASK_PHASE_RUNNING' });
  const first = queue.takeFor(1).map((update) => update.task_id);
  assert.deepEqual(first, ids.slice(0, 64));
  assert.equal(queue.waiting, 36, 'the rest stay pending');
  const second = queue.takeFor(2).map((update) => update.task_id);
  assert.deepEqual(second, ids.slice(64));
  assert.equal(queue.waiting, 0);
  assert.deepEqual(queue.acknowledge(1).map((update) => update.task_id), first, 'an ack delivers what its heartbeat carried, no more');
  assert.equal(queue.size, 36);
  // The stream ends before the second ack: its 36 go first again, ahead of what came since, still 64 at most.
  for (const task_id of ['late_0', 'late_1']) queue.add({ task_id, phase: 'TASK_PHASE_SUCCEEDED' });
  queue.requeueUnacknowledged();
  assert.deepEqual(queue.takeFor(3).map((update) => update.task_id), [...ids.slice(64), 'late_0', 'late_1']);
  queue.add({ task_id: 'x', phase: 'TASK_PHASE_RUNNING' });
  for (let index = 0; index < 70; index += 1) queue.add({ task_id: `more_${index}`, phase: 'TASK_PHASE_RUNNING' });
  assert.equal(queue.takeFor(4).length, 64);
  assert.deepEqual(queue.acknowledge(4).map((update) => update.task_id).slice(0, 38), [...ids.slice(64), 'late_0', 'late_1'], 'acks cover every sequence up to theirs');
  assert.equal(queue.size, 7);
});

test('64 reports of 16 KiB output each (about 1 MiB, UTF-8 up to 3 MiB) go out in heartbeats the appliance accepts, each under its 1 MiB bound, oldest first', () => {
  const serialize = loadIngestProto().ctops.ingest.v1.IngestService.service.Heartbeat.requestSerialize;
  for (const character of ['x', '€']) {
    const queue = new TaskUpdateQueue();
    const ids = Array.from({ length: 64 }, (_, index) => `tsk_${index}`);
    for (const task_id of ids) queue.add({ task_id, phase: 'TASK_PHASE_SUCCEEDED', message: character.repeat(MESSAGE_LIMIT_CHARS), result_json: '{"exit_code":0}' });
    const carried: string[] = [];
    for (let sequence = 1; queue.waiting > 0; sequence += 1) {
      const taskUpdates = queue.takeFor(sequence);
      const vitals = { cpuPercent: 1, memoryPercent: 2, diskPercent: 3, uptimeSeconds: 4 };
      const bytes = serialize(buildHeartbeat({ agentId: 'hst_x', sequence, intervalSecs: 30, agentVersion: '1.2.3', nowMs: 0, vitals, taskUpdates })).length;
      assert.ok(bytes <= MAX_HEARTBEAT_REQUEST_BYTES, `heartbeat ${sequence} of ${taskUpdates.length} '${character}' reports is ${bytes} bytes`);
      assert.ok(taskUpdates.length > 0 && sequence <= 4, 'every heartbeat carries some, and few heartbeats are needed');
      carried.push(...taskUpdates.map((update) => update.task_id!));
    }
    assert.deepEqual(carried, ids, 'every report once, in order');
  }
});
