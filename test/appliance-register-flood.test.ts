import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type * as grpc from '@grpc/grpc-js';
import { REGISTER_FAILURES_PER_WINDOW, REGISTER_FAILURE_WINDOW_SECS } from '../appliance/enrolment/register-throttle.ts';
import { MAX_REQUEST_BYTES } from '../appliance/grpc/malformed-requests.ts';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import type { IngestServiceClient, RegisterRequest } from '../common/proto.ts';
import { RETRY_AFTER_MS_METADATA } from '../common/retry-hint.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { registerPayload, toRegisterRequest } from '../common/register-payload.ts';
import { ingestClient } from './helpers/ingest-client.ts';
import { rawGrpcCall } from './helpers/raw-grpc.ts';
import { startSourceRelay } from './helpers/source-relay.ts';

/*
 * Register is the one RPC anyone who reaches the ingest port may call. A source whose
 * Registers keep failing is throttled (RESOURCE_EXHAUSTED with a retry-after-ms hint) before
 * any work; refusals record nothing and are logged in aggregate. Real appliance, real TLS.
 */

interface RegisterAnswer {
  grpcCode: number;
  errorCode: string | undefined;
  retryAfterMs: number | undefined;
}

/** One Register with the status and the retry hint from the trailing metadata. */
function register(client: IngestServiceClient, request: RegisterRequest): Promise<RegisterAnswer> {
  return new Promise((resolve) => {
    client.Register(request, { deadline: Date.now() + 30_000 }, (error: grpc.ServiceError | null) => {
      if (error === null) return resolve({ grpcCode: GrpcCode.OK, errorCode: undefined, retryAfterMs: undefined });
      const hint = error.metadata?.get(RETRY_AFTER_MS_METADATA)[0];
      resolve({ grpcCode: error.code, errorCode: codeFromGrpcDetails(error.details), retryAfterMs: hint === undefined ? undefined : Number(hint) });
    });
  });
}

/**
 * Sends `count` Registers made by `request` over `channels` connections, `perChannel` in flight on
 * each, until `count` were sent and `until()` holds, or `maxMs` passed. Returns every answer.
 */
async function flood(
  appliance: TestAppliance,
  request: (index: number) => RegisterRequest,
  options: { count: number; channels: number; perChannel: number; maxMs: number; until?: () => boolean },
): Promise<RegisterAnswer[]> {
  const answers: RegisterAnswer[] = [];
  const deadline = Date.now() + options.maxMs;
  const clients = Array.from({ length: options.channels }, () => ingestClient(appliance.address, appliance.caCert));
  let sent = 0;
  const more = (): boolean => Date.now() < deadline && (sent < options.count || !(options.until?.() ?? true));
  const loop = async (client: IngestServiceClient): Promise<void> => {
    while (more()) {
      const index = sent++;
      answers.push(await register(client, request(index)));
    }
  };
  try {
    await Promise.all(clients.flatMap((client) => Array.from({ length: options.perChannel }, () => loop(client))));
  } finally {
    for (const client of clients) client.close();
  }
  return answers;
}

function nonceRows(dataDir: string): number {
  const db = new Database(join(dataDir, 'appliance.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS rows FROM register_nonces').get() as { rows: number }).rows;
  } finally {
    db.close();
  }
}

/** How many throttle windows may have begun since `started` (one more when the calls in flight straddle a window's end). */
function windowsSince(started: number): number {
  return 2 + Math.floor((Date.now() - started) / (REGISTER_FAILURE_WINDOW_SECS * 1000));
}

/**
 * A throwaway key that signs Registers with node:crypto (native), so a flood is paced by the
 * appliance and not by the test's signing (tweetnacl, in signedRegister, is far slower).
 */
function throwawaySigner(hostname: string): (orgToken: string, overrides?: Partial<RegisterRequest>) => RegisterRequest {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const raw = Buffer.from(publicKey.export({ format: 'jwk' }).x as string, 'base64url');
  const fingerprint = randomBytes(32).toString('hex');
  return (orgToken, overrides = {}) => {
    const fields = {
      publicKey: raw, orgToken, hostname, machineFingerprint: fingerprint, os: 'linux', arch: 'x64', agentVersion: '0.1.0-test',
      timestampUnixMs: Date.now(), nonce: randomBytes(16), tags: {},
    };
    return { ...toRegisterRequest(fields, sign(null, registerPayload(fields), privateKey)), ...overrides };
  };
}

const throwaway = Array.from({ length: 32 }, (_, index) => throwawaySigner(`flood-${index}`));
const pick = (index: number) => throwaway[index % throwaway.length] as ReturnType<typeof throwawaySigner>;

/** A fresh appliance for the tests of one describe block: the throttle's counts belong to one process. */
function useFreshAppliance(): () => TestAppliance {
  let appliance: TestAppliance | undefined;
  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await appliance?.dispose();
  });
  return () => {
    assert.ok(appliance, 'the appliance starts in before()');
    return appliance;
  };
}

describe('a Register flood without a credential', () => {
  const appliance = useFreshAppliance();

  test('5,000 bad-token Registers are throttled with a retry hint, store no nonce, log a few lines, and an honest agent from another address enrols during the flood', async (t) => {
    const { token } = await appliance().createToken('--auto-approve');
    const relay = await startSourceRelay(appliance().grpcPort, '127.0.0.2');
    const honest = new TestAgent({ address: `localhost:${relay.port}`, caCertFile: appliance().caCertPath, orgToken: token });
    try {
      const logBytesBefore = Buffer.byteLength(appliance().process.stdout);
      const started = Date.now();
      let enrolledDuringFlood = false;
      const flooding = flood(appliance(), (index) => pick(index)(`tok_bad_${index}`), {
        count: 5_000,
        channels: 4,
        perChannel: 16,
        maxMs: 90_000,
        until: () => enrolledDuringFlood,
      });
      // The agent starts once the flood is under way, so it has to enrol through it.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const agent = honest.start();
      await agent.waitForLog('agent registered and active', {}, 60_000);
      enrolledDuringFlood = true;
      const answers = await flooding;
      const logBytes = Buffer.byteLength(appliance().process.stdout) - logBytesBefore;

      const throttled = answers.filter((answer) => answer.errorCode === 'ERR_REGISTER_THROTTLED');
      const processed = answers.filter((answer) => answer.errorCode !== 'ERR_REGISTER_THROTTLED');
      t.diagnostic(`${answers.length} Registers in ${Date.now() - started} ms: ${throttled.length} throttled, ${processed.length} processed; ${logBytes} bytes of appliance log`);
      assert.ok(answers.length >= 5_000, `the flood sent ${answers.length} Registers`);
      assert.ok(throttled.length >= answers.length * 0.9, `${throttled.length} of ${answers.length} throttled`);
      assert.ok(processed.every((answer) => answer.errorCode === 'ERR_TOKEN_INVALID'), 'the rest were refused for their token');
      assert.ok(processed.length <= REGISTER_FAILURES_PER_WINDOW * windowsSince(started), `${processed.length} Registers reached the token check`);
      for (const answer of throttled) {
        assert.equal(answer.grpcCode, GrpcCode.RESOURCE_EXHAUSTED);
        assert.ok(answer.retryAfterMs !== undefined && answer.retryAfterMs > 0 && answer.retryAfterMs <= REGISTER_FAILURE_WINDOW_SECS * 1000, `hint ${answer.retryAfterMs}`);
      }
      assert.ok(logBytes < 64 * 1024, `the flood wrote ${logBytes} bytes of appliance log`);
      assert.equal(appliance().process.logged('ingest refused', { peer: '127.0.0.1', what: 'register' }).length, 1, 'one line at the first refusal, the rest aggregated');
      assert.equal((await appliance().hosts()).filter((host) => host.hostname.startsWith('flood-')).length, 0);
      const honestHosts = await appliance().hosts();
      assert.equal(honestHosts.length, 1, 'only the honest agent enrolled');

      await honest.stop();
      await appliance().stop();
      const rows = nonceRows(appliance().dataDir);
      t.diagnostic(`register_nonces rows after the flood: ${rows}`);
      assert.ok(rows <= 2, 'only the honest agent’s Register left a nonce');
    } finally {
      await honest.dispose();
      await relay.close();
    }
  });
});

describe('failures of every kind count, successes do not', () => {
  const appliance = useFreshAppliance();

  test('more honest enrolments from one address than the failure budget all succeed; then forged signatures and replays from it are refused and, once they spend the budget, throttled', async () => {
    const { token } = await appliance().createToken('--auto-approve', '--max-uses', '1000');
    const burst = REGISTER_FAILURES_PER_WINDOW + 30;
    const honest = await flood(appliance(), (index) => throwawaySigner(`honest-${index}`)(token), { count: burst, channels: 2, perChannel: 8, maxMs: 60_000 });
    assert.equal(honest.filter((answer) => answer.grpcCode === GrpcCode.OK).length, burst, 'a burst of honest enrolments is never throttled');

    // A captured Register of a known host, replayed; and requests whose signature does not match.
    const known = pick(0)(token);
    const [enrolled] = await flood(appliance(), () => known, { count: 1, channels: 1, perChannel: 1, maxMs: 10_000 });
    assert.equal(enrolled?.grpcCode, GrpcCode.OK);
    const started = Date.now();
    const forged = (index: number): RegisterRequest => (index % 2 === 0 ? known : pick(1)(token, { hostname: `forged-${index}` }));
    const answers = await flood(appliance(), forged, { count: 300, channels: 1, perChannel: 4, maxMs: 60_000 });

    const byCode = new Map<string | undefined, number>();
    for (const answer of answers) byCode.set(answer.errorCode, (byCode.get(answer.errorCode) ?? 0) + 1);
    const refusedForCause = (byCode.get('ERR_REGISTER_REPLAYED') ?? 0) + (byCode.get('ERR_REGISTER_SIGNATURE_INVALID') ?? 0);
    assert.ok(refusedForCause >= 1 && refusedForCause <= REGISTER_FAILURES_PER_WINDOW * windowsSince(started), `refused for cause: ${JSON.stringify([...byCode])}`);
    assert.equal(byCode.get('ERR_REGISTER_THROTTLED'), answers.length - refusedForCause, 'everything after the budget is throttled');
    assert.equal(byCode.get(undefined), undefined, 'no replay or forgery was accepted');
    assert.equal((await appliance().hosts()).filter((host) => String(host.hostname).startsWith('forged-')).length, 0);

    await appliance().stop();
    assert.equal(nonceRows(appliance().dataDir), burst + 1, 'the replays and forgeries left no nonce');
  });
});

describe('the real agent honours the retry hint', () => {
  const appliance = useFreshAppliance();

  test('a throttled agent waits at least the hint, instead of its 1 s backoff, then enrols', async (t) => {
    const { token } = await appliance().createToken('--auto-approve');
    const answers = await flood(appliance(), (index) => pick(index)('tok_bad'), {
      count: REGISTER_FAILURES_PER_WINDOW + 10, channels: 1, perChannel: 4, maxMs: 30_000,
    });
    assert.ok(answers.some((answer) => answer.errorCode === 'ERR_REGISTER_THROTTLED'), 'this address is throttled');

    const agent = new TestAgent({ address: appliance().address, caCertFile: appliance().caCertPath, orgToken: token });
    try {
      const proc = agent.start();
      const failed = await proc.waitForLog('registration failed', { error_code: 'ERR_REGISTER_THROTTLED' }, 20_000);
      const failedAt = Date.now();
      const hint = failed.retry_after_ms as number;
      assert.equal(failed.code, GrpcCode.RESOURCE_EXHAUSTED);
      assert.ok(hint > 1_000 && hint <= REGISTER_FAILURE_WINDOW_SECS * 1000, `hint ${hint}`);
      assert.ok((failed.retry_in_ms as number) >= hint && (failed.retry_in_ms as number) <= hint * 1.5, `waits ${failed.retry_in_ms} ms for a ${hint} ms hint`);

      await proc.waitForLog('agent registered and active', {}, REGISTER_FAILURE_WINDOW_SECS * 1500 + 15_000);
      t.diagnostic(`hint ${hint} ms, agent waited ${failed.retry_in_ms} ms, enrolled ${Date.now() - failedAt} ms after the refusal`);
      assert.ok(Date.now() - failedAt >= hint - 1_000, `enrolled ${Date.now() - failedAt} ms after a ${hint} ms hint`);
      assert.equal(proc.logged('registering agent').length, 2, 'no Register in between');
      assert.equal(proc.running, true, 'throttling is not fatal');
    } finally {
      await agent.dispose();
    }
  });
});

describe('Registers the strict deserializer refuses count too', () => {
  const appliance = useFreshAppliance();

  test('garbage Register frames (malformed protobuf, invalid UTF-8, over 64 KiB) spend the failure budget, are then throttled, and are logged aggregated by source', async () => {
    const garbage = [
      Buffer.from([0x1a, 0x05, 0x41]), // field 3 claims 5 bytes, 1 follows
      Buffer.from([0x1a, 0x02, 0xc3, 0x28]), // hostname cut in the middle of a character
      Buffer.alloc((MAX_REQUEST_BYTES.Register as number) + 1, 0x20),
    ];
    const send = async (port: number, index: number): Promise<string | undefined> => codeFromGrpcDetails((await rawGrpcCall(port, appliance().caCert, 'Register', [garbage[index % garbage.length] as Buffer])).message ?? '');
    const started = Date.now();
    const answers: Array<string | undefined> = [];
    for (let index = 0; index < REGISTER_FAILURES_PER_WINDOW + 20; index += 1) answers.push(await send(appliance().grpcPort, index));
    assert.ok(Date.now() - started < REGISTER_FAILURE_WINDOW_SECS * 1000, 'the calls fit in one throttle window');

    assert.deepEqual(new Set(answers.slice(0, REGISTER_FAILURES_PER_WINDOW)), new Set(['ERR_INVALID_ARGUMENT', 'ERR_MESSAGE_TOO_LARGE']), 'the budget is spent by garbage');
    assert.deepEqual(new Set(answers.slice(REGISTER_FAILURES_PER_WINDOW)), new Set(['ERR_REGISTER_THROTTLED']), 'then the garbage is throttled');
    const client = ingestClient(appliance().address, appliance().caCert);
    const wellFormed = await register(client, pick(0)('tok_bad')).finally(() => client.close());
    assert.equal(wellFormed.errorCode, 'ERR_REGISTER_THROTTLED', 'a well-formed Register from the source is throttled as well');
    const relay = await startSourceRelay(appliance().grpcPort, '127.0.0.2');
    try {
      assert.equal(await send(relay.port, 0), 'ERR_INVALID_ARGUMENT', 'another source is not throttled');
    } finally {
      await relay.close();
    }

    await appliance().stop();
    assert.equal(appliance().process.logged('ingest refused', { peer: '127.0.0.1', what: 'register' }).length, 1, 'one line at the first refusal');
    const [summary] = appliance().process.logged('ingest refusals', { peer: '127.0.0.1' });
    const refused = summary?.refused as Record<string, number> | undefined;
    assert.equal(Object.values(refused ?? {}).reduce((sum, count) => sum + count, 0), answers.length + 1, `aggregated: ${JSON.stringify(refused)}`);
    assert.equal(refused?.ERR_REGISTER_THROTTLED, 21);
  });
});
