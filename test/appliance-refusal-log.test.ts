import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CtOpsError } from '../common/errors.ts';
import { HostMessageRate } from '../appliance/heartbeat/message-rate.ts';
import { peerSource } from '../appliance/lib/peer-source.ts';
import { RefusalLog } from '../appliance/lib/refusal-log.ts';
import { memoryLogger } from './helpers/memory-logger.ts';

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

test('the host message rate grants the steady budget and a burst, then refuses with a hint until the burst is back; hosts are counted apart', async () => {
  const rate = new HostMessageRate({ burst: 3, perSecond: 1 });
  const outcomes = async (hostId: string, times: number): Promise<Array<string | number>> => {
    const results: Array<string | number> = [];
    for (let index = 0; index < times; index += 1) {
      results.push(await rate.take(hostId).then(() => 'ok', (error: unknown) => (error instanceof CtOpsError ? `${error.code}` : 'other')));
    }
    return results;
  };
  assert.deepEqual(await outcomes('hst_a', 5), ['ok', 'ok', 'ok', 'ok', 'ERR_STREAM_RATE_LIMITED'], 'one a second plus a burst of 3');
  const refusal = await rate.take('hst_a').then(() => undefined, (error: unknown) => error as CtOpsError);
  const hint = refusal?.details.retry_after_ms;
  assert.ok(typeof hint === 'number' && hint > 1_000 && hint <= 3_000, `hint ${hint} ms: until the burst budget is back, not the next second`);
  assert.deepEqual(await outcomes('hst_b', 1), ['ok'], 'another host has its own budget');
  await sleep(1_100);
  assert.deepEqual(await outcomes('hst_a', 2), ['ok', 'ERR_STREAM_RATE_LIMITED'], 'one more a second');
});
