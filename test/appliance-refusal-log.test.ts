import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { KeyedRateLimiter } from '../appliance/lib/rate-limit.ts';
import { peerSource } from '../appliance/lib/peer-source.ts';
import { RefusalLog } from '../appliance/lib/refusal-log.ts';

/** A real pino logger writing JSON lines into memory. */
function memoryLogger(): { log: pino.Logger; lines: () => Array<Record<string, unknown>>; bytes: () => number } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString('utf8');
      done();
    },
  });
  return { log: pino(sink), lines: () => text.trim().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>), bytes: () => text.length };
}

test('10,000 refusals of one host in an interval cost two log lines without stacks: the first at once, then the counts by code', () => {
  const { log, lines, bytes } = memoryLogger();
  const refusals = new RefusalLog(log, 60_000);
  for (let index = 0; index < 10_000; index += 1) {
    const code = index % 4 === 0 ? 'ERR_INVALID_ARGUMENT' : 'ERR_TASK_NOT_FOUND';
    refusals.refused({ host_id: 'hst_a' }, new CtOpsError(code, `no task tsk_${index} for this agent`), 'task report');
  }
  assert.equal(lines().length, 1, 'only the first is logged during the interval');
  refusals.close();
  const [first, summary] = lines();
  assert.equal(first!.msg, 'ingest refused');
  assert.equal(first!.code, 'ERR_INVALID_ARGUMENT');
  assert.equal(first!.err, undefined, 'no stack trace for a refusal of peer input');
  assert.equal(summary!.msg, 'ingest refusals');
  assert.deepEqual(summary!.refused, { ERR_INVALID_ARGUMENT: 2_500, ERR_TASK_NOT_FOUND: 7_500 });
  assert.equal(summary!.interval_s, 60);
  assert.ok(bytes() < 1_024, `${bytes()} bytes`);
});

test('unauthenticated peers are counted apart by source, a reconnecting address stays one source, and a new interval logs its first refusal again', () => {
  const { log, lines } = memoryLogger();
  const refusals = new RefusalLog(log, 60_000);
  const refusal = new CtOpsError('ERR_JWT_INVALID', 'bad JWT');
  for (const peer of ['127.0.0.1:40001', '127.0.0.1:40002', '[::1]:40003', '::1:40004']) refusals.refused({ peer: peerSource(peer) }, refusal, 'heartbeat stream');
  refusals.flush();
  refusals.refused({ peer: '127.0.0.1' }, refusal, 'heartbeat stream');
  refusals.close();
  assert.deepEqual(lines().map((line) => [line.msg, line.peer]), [
    ['ingest refused', '127.0.0.1'],
    ['ingest refused', '0:0:0:0::/64'],
    ['ingest refusals', '127.0.0.1'],
    ['ingest refusals', '0:0:0:0::/64'],
    ['ingest refused', '127.0.0.1'],
  ]);
});

test('a Register flood from two sources costs one line at the first refusal and one summary per source, with counts by code', () => {
  const { log, lines } = memoryLogger();
  const refusals = new RefusalLog(log, 60_000);
  const invalid = new CtOpsError('ERR_TOKEN_INVALID', 'the enrolment token is not known to this appliance');
  const throttled = new CtOpsError('ERR_REGISTER_THROTTLED', 'too many failed Register requests');
  for (let index = 0; index < 5_000; index += 1) refusals.refused({ peer: index % 5 === 0 ? '127.0.0.2' : '127.0.0.1' }, index < 100 ? invalid : throttled, 'register');
  refusals.flush();
  refusals.flush();
  assert.deepEqual(lines().map((line) => [line.msg, line.peer, line.what]), [
    ['ingest refused', '127.0.0.2', 'register'],
    ['ingest refused', '127.0.0.1', 'register'],
    ['ingest refusals', '127.0.0.2', undefined],
    ['ingest refusals', '127.0.0.1', undefined],
  ], 'a second flush of an empty interval logs nothing');
  assert.equal(lines()[0]!.code, 'ERR_TOKEN_INVALID');
  assert.deepEqual(lines()[2]!.refused, { ERR_TOKEN_INVALID: 20, ERR_REGISTER_THROTTLED: 980 });
  assert.deepEqual(lines()[3]!.refused, { ERR_TOKEN_INVALID: 80, ERR_REGISTER_THROTTLED: 3_920 });
  assert.ok(lines().every((line) => line.err === undefined), 'no stack traces');
  refusals.close();
});

test('an unexpected failure (not a refusal of input) keeps its stack on its first line', () => {
  const { log, lines } = memoryLogger();
  const refusals = new RefusalLog(log, 60_000);
  refusals.refused({ host_id: 'hst_b' }, new TypeError('boom'), 'heartbeat');
  refusals.close();
  assert.equal(lines()[0]!.code, 'ERR_INTERNAL');
  assert.match(String((lines()[0]!.err as { stack: string }).stack), /TypeError: boom/);
});

test('the rate limiter grants a burst, then the refill rate, per key; its memory stays bounded by forgetting full buckets', () => {
  const limiter = new KeyedRateLimiter({ burst: 3, perSecond: 1 }, 2);
  const taken = (key: string, at: number, times: number) => Array.from({ length: times }, () => limiter.take(key, at));
  assert.deepEqual(taken('a', 0, 4), [true, true, true, false]);
  assert.deepEqual(taken('b', 0, 1), [true], 'another key has its own bucket');
  assert.deepEqual(taken('a', 1_000, 2), [true, false], 'one token a second');
  // A third key at the cap: the buckets that refilled completely are forgotten (a full bucket is the default).
  assert.deepEqual(taken('c', 10_000, 1), [true]);
  assert.deepEqual(taken('a', 10_000, 4), [true, true, true, false], 'a forgotten key starts full, never above the burst');
});
