import assert from 'node:assert/strict';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { successorProofPayload } from '../common/successor-proof.ts';
import { GrpcCode } from '../common/errors.ts';
import { RETRY_AFTER_MS_METADATA } from '../common/retry-hint.ts';
import type { HeartbeatRequest, HeartbeatResponse__Output, RegisterRequest, RegisterResponse__Output } from '../common/proto.ts';
import { loadAgentConfig } from '../agent/config/load.ts';
import type { AgentConfig } from '../agent/config/types.ts';
import { loadIdentity } from '../agent/identity/load.ts';
import { identityPaths } from '../agent/identity/paths.ts';
import { writeAgentState } from '../agent/identity/state.ts';
import { Agent, type AgentExit } from '../agent/lifecycle/agent.ts';
import { afterHintMs, Backoff, backoffCeilingMs, BACKOFF_SCHEDULE_MS, FIRST_WAIT_AFTER_HEALTHY_CEILING_MS, fullJitterMs, RETRY_FLOOR_MS } from '../agent/lifecycle/backoff.ts';
import { INITIAL_INPUTS, nextState } from '../agent/lifecycle/state.ts';
import { createLogger } from '../agent/log/logger.ts';
import { rpcFailure } from '../agent/transport/failure.ts';
import { IngestAddresses } from '../agent/transport/addresses.ts';
import type { ChallengeResult, HeartbeatCall, HeartbeatHandlers, IngestTransport, RegisterResult, SubmitResult } from '../agent/transport/types.ts';
import { busiestWindow, seededRandom } from './helpers/spread.ts';

// ---------------------------------------------------------------- pure logic

test('nextState: each combination of facts names what the agent needs next', () => {
  const loaded = { ...INITIAL_INPUTS, identity: 'loaded' as const };
  assert.equal(nextState(INITIAL_INPUTS), 'needs-identity');
  assert.equal(nextState(loaded), 'needs-registration');
  assert.equal(nextState({ ...loaded, credential: 'usable' }), 'connecting');
  assert.equal(nextState({ ...loaded, credential: 'usable', stream: 'acknowledged' }), 'streaming');
  assert.equal(nextState({ ...loaded, approvalPollMs: 30_000 }), 'awaiting-approval');
  assert.equal(nextState({ ...loaded, credential: 'usable', retryInMs: 1000 }), 'backing-off');
  assert.equal(nextState({ ...loaded, approvalPollMs: 5, retryInMs: 1000 }), 'backing-off');
  assert.equal(nextState({ ...loaded, credential: 'usable', stream: 'acknowledged', stop: { kind: 'signal', signal: 'SIGTERM' } }), 'stopped');
  assert.equal(nextState({ ...INITIAL_INPUTS, stop: { kind: 'signal', signal: 'SIGINT' } }), 'stopped');
});

test('the schedule 1, 2, 4, 8, 16, 32, 60 s is the ceiling of each wait, then stays at 60 s; no wait is under the 250 ms floor', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 50].map(backoffCeilingMs), [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
  const highest = new Backoff(() => 0.999999);
  assert.deepEqual(Array.from({ length: 9 }, () => highest.next()), [...BACKOFF_SCHEDULE_MS, 60000, 60000].map((ceiling) => ceiling - 1));
  highest.reset();
  assert.equal(highest.next(), FIRST_WAIT_AFTER_HEALTHY_CEILING_MS - 1, 'a healthy stream starts the schedule over, its first wait under 4 s');
  assert.deepEqual(Array.from({ length: 3 }, () => highest.next()), [1999, 3999, 7999], 'then the schedule from its second step');
  for (const misbehaving of [0, -3, 5, Number.NaN, Number.POSITIVE_INFINITY]) {
    const delays = Array.from({ length: 3 }, () => fullJitterMs(1000, () => misbehaving));
    assert.ok(delays.every((delay) => delay >= RETRY_FLOOR_MS && delay < 1000), `random() = ${misbehaving}: ${delays.join(', ')}`);
  }
  assert.equal(afterHintMs(0, () => 0), RETRY_FLOOR_MS, 'a hint of 0 cannot make a busy loop');
});

test('full jitter (seeded): 10,000 agents\' waits at each step fill [250 ms, ceiling) evenly, a tenth of them in each tenth of the window', () => {
  const random = seededRandom(9);
  const steps = BACKOFF_SCHEDULE_MS.length;
  const waits: number[][] = Array.from({ length: steps }, () => []);
  for (let agent = 0; agent < 10_000; agent += 1) {
    const backoff = new Backoff(random);
    for (let step = 0; step < steps; step += 1) waits[step]!.push(backoff.next());
  }
  for (const [step, drawn] of waits.entries()) {
    const ceiling = backoffCeilingMs(step);
    const width = ceiling - RETRY_FLOOR_MS;
    assert.ok(drawn.every((wait) => wait >= RETRY_FLOOR_MS && wait < ceiling), `step ${step}: inside [${RETRY_FLOOR_MS}, ${ceiling})`);
    const tenths = Array.from({ length: 10 }, (_, tenth) => drawn.filter((wait) => Math.floor(((wait - RETRY_FLOOR_MS) / width) * 10) === tenth).length);
    assert.ok(tenths.every((count) => count >= 900 && count <= 1100), `step ${step}: each tenth of the window holds 1000 ± 100 waits: ${tenths.join(', ')}`);
  }
});

test('full jitter (seeded): 1,000 agents that lost the appliance together and find it back after 12 s return over many seconds, no second holding a third of them', () => {
  const random = seededRandom(12);
  const outageMs = 12_000;
  const returns = Array.from({ length: 1000 }, () => {
    const backoff = new Backoff(random);
    let at = backoff.next();
    while (at < outageMs) at += backoff.next();
    return at - outageMs;
  }).sort((a, b) => a - b);
  const busiest = busiestWindow(returns, 1000);
  assert.ok(busiest < 1000 / 3, `busiest second: ${busiest} of 1000`);
  assert.ok(returns.at(-1)! < 60_000, 'every agent is back within the longest ceiling');
  assert.ok(returns.at(-1)! - returns[0]! > 10_000, `returns spread over ${returns.at(-1)! - returns[0]!} ms`);
});

test('full jitter (seeded): 1,000 agents that waited out a stopping appliance\'s 1-10 s hints and found it still down return spread, the schedule going on from where their wait left them', () => {
  const random = seededRandom(62);
  const outageMs = 13_000;
  const returns = Array.from({ length: 1000 }, () => {
    const backoff = new Backoff(random);
    let at = backoff.next(1000 + Math.floor(9000 * random()));
    while (at < outageMs) at += backoff.next();
    return at - outageMs;
  });
  // Going on from the schedule's second step instead, about a quarter of them return in one second.
  const busiest = busiestWindow(returns, 1000);
  assert.ok(busiest < 150, `busiest second: ${busiest} of 1000`);
});

test('full jitter (seeded): 1,000 agents whose healthy streams ended together and whose appliance was back 1 s later return over 4 s, no second holding more than 45 % of them', () => {
  const random = seededRandom(61);
  const outageMs = 1000;
  const returns = Array.from({ length: 1000 }, () => {
    const backoff = new Backoff(random);
    backoff.reset();
    let at = backoff.next();
    while (at < outageMs) at += backoff.next();
    return at - outageMs;
  });
  // Drawn under the 1 s step, every agent was back within 750 ms of the appliance. Now: the 80 %
  // that drew over 1 s return evenly over 3 s (27 % a second), joined in the first two seconds
  // by the 20 % that drew under 1 s and retried under the 2 s step: about 38 % in the busiest second.
  const busiest = busiestWindow(returns, 1000);
  assert.ok(busiest < 450, `busiest second: ${busiest} of 1000`);
  assert.ok(Math.max(...returns) > 2500, `returns spread over ${Math.max(...returns)} ms`);
});

test('a retry hint is waited out with up to half again on top; a pending poll is spread the same way', () => {
  const random = seededRandom(3);
  const waits = Array.from({ length: 1000 }, () => afterHintMs(10_000, random));
  assert.ok(waits.every((wait) => wait >= 10_000 && wait < 15_000), 'never before the hint, at most half again');
  assert.ok(Math.max(...waits) - Math.min(...waits) > 4000, 'spread over the half');
  const polls = Array.from({ length: 1000 }, () => new Backoff(random).poll(30_000));
  assert.ok(polls.every((wait) => wait >= 30_000 && wait < 45_000) && new Set(polls).size > 900);
});

// ---------------------------------------------------------------- harness

class FakeStream implements HeartbeatCall {
  readonly sent: HeartbeatRequest[] = [];
  closed = false;
  constructor(
    readonly jwt: string,
    private readonly handlers: HeartbeatHandlers,
  ) {}
  send(request: HeartbeatRequest): void {
    assert.equal(this.closed, false, 'send after close');
    this.sent.push(request);
  }
  close(): void {
    this.closed = true;
    // grpc-js reports a locally cancelled call as CANCELLED, asynchronously.
    queueMicrotask(() => this.handlers.onEnd(rpcFailure({ code: GrpcCode.CANCELLED, details: 'Cancelled on client' })));
  }
  push(message: HeartbeatResponse__Output): void {
    this.handlers.onMessage(message);
  }
  ack(sequence: number): void {
    this.push({ kind: 'ack', ack: { sequence, received_unix_ms: 0, clock_offset_ms: 0, clock_offset_known: true, update_offer: null } });
  }
  end(code: number, details = '', metadata?: grpc.Metadata): void {
    this.closed = true;
    this.handlers.onEnd(rpcFailure({ code, details, metadata }));
  }
}

/** Records every call; Register answers come from a queue (an empty queue never answers). */
class FakeTransport implements IngestTransport {
  readonly registers: RegisterRequest[] = [];
  readonly answers: RegisterResult[] = [];
  readonly streams: FakeStream[] = [];
  closed = false;
  getRegisterChallenge(): Promise<ChallengeResult> {
    return Promise.resolve({ ok: true, response: { challenge: Buffer.alloc(57, this.registers.length), expires_in_ms: 120_000, appliance_time_unix_ms: START_MS } });
  }
  register(request: RegisterRequest): Promise<RegisterResult> {
    this.registers.push(request);
    const answer = this.answers.shift();
    return answer === undefined ? new Promise(() => undefined) : Promise.resolve(answer);
  }
  openHeartbeat(jwt: string, handlers: HeartbeatHandlers): HeartbeatCall {
    const stream = new FakeStream(jwt, handlers);
    this.streams.push(stream);
    return stream;
  }
  submitInventory(): Promise<SubmitResult> {
    return Promise.reject(new Error('not used by these tests'));
  }
  close(): void {
    this.closed = true;
  }
  get lastStream(): FakeStream {
    const stream = this.streams.at(-1);
    assert.ok(stream, 'no stream opened');
    return stream;
  }
}

const START_MS = 1_750_000_000_000;

function fakeJwt(expUnix: number, tag = 'a'): string {
  const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'EdDSA' })}.${part({ sub: 'hst_1', exp: expUnix, tag })}.c2ln`;
}

function answer(fields: Partial<RegisterResponse__Output>): RegisterResult {
  return { ok: true, response: { agent_id: 'hst_1', status: 'AGENT_STATUS_PENDING', jwt: '', jwt_expires_unix: 0, retry_after_secs: 0, message: '', ...fields } };
}

function active(jwt = fakeJwt(START_MS / 1000 + 86_400)): RegisterResult {
  return answer({ status: 'AGENT_STATUS_ACTIVE', jwt, jwt_expires_unix: START_MS / 1000 + 86_400 });
}

function failure(code: number, details: string): RegisterResult {
  return { ok: false, failure: rpcFailure({ code, details }) };
}

interface Harness {
  agent: Agent;
  transport: FakeTransport;
  /** The ingest address the agent uses now (shared with the transport in a real agent). */
  addresses: IngestAddresses;
  dir: string;
  configFile: string;
  events: Record<string, unknown>[];
  rawLog: string[];
  messages(): unknown[];
  exit: Promise<AgentExit>;
  advance(ms: number): Promise<void>;
  flush(): Promise<void>;
}

const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

async function start(t: TestContext, prepare?: (dir: string) => void, random = () => 0, ingestToml = 'address = "ingest.test:9443"'): Promise<Harness> {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-agent-lifecycle-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const configFile = join(dir, 'agent.toml');
  writeFileSync(configFile, `[ingest]\n${ingestToml}\n[agent]\norg_token = "tok_secret"\ndata_dir = "${join(dir, 'data')}"\nheartbeat_interval_secs = 30\n`);
  const config: AgentConfig = loadAgentConfig({ file: configFile, env: {} }).config;
  prepare?.(join(dir, 'data'));
  const events: Record<string, unknown>[] = [];
  const rawLog: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      rawLog.push(String(chunk));
      events.push(JSON.parse(String(chunk)));
      done();
    },
  });
  const log = createLogger('debug', sink);
  const transport = new FakeTransport();
  let nowMs = START_MS;
  const addresses = new IngestAddresses(config.ingest.addresses);
  const agent = new Agent({
    config,
    transport,
    addresses,
    host: { hostname: 'web-1', machineFingerprint: 'ab'.repeat(32), os: 'linux', arch: 'x64', agentVersion: '0.1.0', tags: {} },
    vitals: () => ({ cpuPercent: 12.5, memoryPercent: 40, diskPercent: 55, uptimeSeconds: 1234 }),
    log,
    reload: () => loadAgentConfig({ file: configFile, env: {} }),
    now: () => nowMs,
    random,
  });
  return {
    agent,
    transport,
    addresses,
    dir,
    configFile,
    events,
    rawLog,
    messages: () => events.map((event) => event.msg),
    exit: Promise.resolve(),
    flush,
    async advance(ms: number) {
      nowMs += ms;
      t.mock.timers.tick(ms);
      await flush();
    },
  } as unknown as Harness;
}

async function run(h: Harness): Promise<Harness> {
  h.exit = h.agent.run();
  await flush();
  return h;
}

function saveState(dataDir: string, expiresUnix: number, agentId = 'hst_1'): void {
  const sink = new Writable({ write: (_chunk, _encoding, done) => done() });
  loadIdentity(dataDir, createLogger('silent', sink));
  writeAgentState(identityPaths(dataDir), { agentId, jwt: fakeJwt(expiresUnix, 'saved'), jwtExpiresUnix: expiresUnix });
}

// ---------------------------------------------------------------- behaviour

test('first enrolment: token sent, JWT saved, stream opened with Bearer metadata, spec log lines in order', async (t) => {
  const h = await start(t);
  h.transport.answers.push(active());
  await run(h);
  assert.equal(h.transport.registers.length, 1);
  assert.equal(h.transport.registers[0]?.org_token, 'tok_secret');
  const state = JSON.parse(readFileSync(join(h.dir, 'data', 'agent_state.json'), 'utf8'));
  assert.equal(state.agent_id, 'hst_1');
  assert.equal(state.jwt_expires_unix, START_MS / 1000 + 86_400);
  const stream = h.transport.lastStream;
  assert.equal(stream.jwt, state.jwt, 'the JWT goes in call metadata');
  assert.equal(h.agent.state, 'connecting');
  const first = stream.sent[0];
  assert.ok(first, 'the first heartbeat goes out as soon as the stream opens');
  assert.equal(first.agent_id, 'hst_1');
  assert.equal(first.sequence, 1);
  assert.equal(first.interval_secs, 30);
  assert.equal(first.cpu_percent, 12.5);
  assert.equal(first.timestamp_unix, Math.floor(START_MS / 1000));
  assert.ok(!Object.values(first).includes(state.jwt), 'no message field carries the JWT');
  stream.ack(1);
  assert.equal(h.agent.state, 'streaming');
  const spec = ['agent identity ready', 'registering agent', 'registration response', 'agent registered and active', 'starting heartbeat', 'heartbeat stream opened'];
  assert.deepEqual(h.messages().filter((msg) => spec.includes(msg as string)), spec);
  const byMsg = (msg: string) => h.events.find((event) => event.msg === msg);
  assert.equal(byMsg('agent identity ready')?.data_dir, join(h.dir, 'data'));
  assert.equal(byMsg('registering agent')?.address, 'ingest.test:9443');
  assert.deepEqual([byMsg('registration response')?.status, byMsg('registration response')?.agent_id], ['active', 'hst_1']);
  assert.equal(byMsg('starting heartbeat')?.interval_secs, 30);
  assert.ok(h.rawLog.every((line) => !line.includes('tok_secret') && !line.includes(state.jwt)), 'neither token nor JWT is logged');

  await h.advance(30_000);
  assert.deepEqual(stream.sent.map((request) => request.sequence), [1, 2]);
  h.agent.stop('SIGTERM');
  assert.deepEqual(await h.exit, { exitCode: 0, error: undefined });
  assert.ok(stream.closed && h.transport.closed);
  assert.equal(h.agent.state, 'stopped');
});

test('pending: polls again after retry_after_secs (default 30) with a fresh challenge, then streams when approved', async (t) => {
  const h = await start(t);
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_PENDING', retry_after_secs: 10 }), answer({ status: 'AGENT_STATUS_PENDING' }), active());
  await run(h);
  assert.equal(h.agent.state, 'awaiting-approval');
  assert.ok(h.messages().includes('awaiting approval'));
  await h.advance(9_999);
  assert.equal(h.transport.registers.length, 1);
  await h.advance(1);
  assert.equal(h.transport.registers.length, 2);
  await h.advance(29_999);
  assert.equal(h.transport.registers.length, 2);
  await h.advance(1);
  assert.equal(h.transport.registers.length, 3);
  const challenges = h.transport.registers.map((request) => Buffer.from(request.register_challenge as Uint8Array).toString('hex'));
  assert.equal(new Set(challenges).size, 3, 'every poll is signed afresh');
  assert.equal(h.transport.registers[1]?.org_token, '', 'a key the appliance holds pending needs no token');
  assert.equal(h.agent.state, 'connecting');
  assert.equal(h.transport.streams.length, 1);
});

for (const status of ['AGENT_STATUS_REVOKED', 'AGENT_STATUS_REJECTED'] as const) {
  test(`${status} stops the agent with exit code 77 and no retry`, async (t) => {
    const h = await start(t);
    h.transport.answers.push(answer({ status, message: 'by admin' }));
    await run(h);
    const exit = await h.exit;
    assert.equal(exit.exitCode, 77);
    assert.equal(exit.error?.code, 'ERR_AGENT_REVOKED');
    assert.ok(h.messages().includes('agent revoked; stopping'));
    await h.advance(120_000);
    assert.equal(h.transport.registers.length, 1);
  });
}

test('an unexpected status is polled like pending, never an exit', async (t) => {
  const h = await start(t);
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_UNSPECIFIED' }), answer({ status: 'AGENT_STATUS_OFFLINE' as RegisterResponse__Output['status'], retry_after_secs: 5 }), active());
  await run(h);
  assert.equal(h.agent.state, 'awaiting-approval');
  await h.advance(30_000);
  assert.equal(h.agent.state, 'awaiting-approval');
  await h.advance(5_000);
  assert.equal(h.agent.state, 'connecting');
});

test('a restart with an unexpired JWT skips registration and streams at once', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  assert.equal(h.transport.registers.length, 0);
  assert.equal(h.transport.lastStream.jwt, fakeJwt(START_MS / 1000 + 3600, 'saved'));
  assert.equal(h.transport.lastStream.sent[0]?.agent_id, 'hst_1');
});

test('a restart with a JWT that looks expired by the host clock tries it first: only the appliance judges it', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 - 2 * 86_400));
  await run(h);
  assert.equal(h.transport.registers.length, 0, 'no Register while the appliance has not refused the JWT');
  assert.equal(h.transport.lastStream.jwt, fakeJwt(START_MS / 1000 - 2 * 86_400, 'saved'));
  assert.equal(h.agent.state, 'connecting');
});

test('stream failures reconnect within the 1, 2, 4, 8, 16, 32, 60, 60 s ceilings (full jitter); a healthy stream (two acks over one interval) starts over, its first wait under 4 s', async (t) => {
  const random = () => 0.75;
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 30 * 86_400), random);
  await run(h);
  for (const ceiling of [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]) {
    const delay = fullJitterMs(ceiling, random);
    assert.ok(delay > ceiling / 2 && delay < ceiling, `${delay} ms: three quarters into [250, ${ceiling})`);
    const before = h.transport.streams.length;
    h.transport.lastStream.end(GrpcCode.UNAVAILABLE, 'Connection dropped');
    await h.flush();
    assert.equal(h.agent.state, 'backing-off');
    assert.equal(h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1)?.reconnect_in_ms, delay);
    await h.advance(delay - 1);
    assert.equal(h.transport.streams.length, before, `not before ${delay} ms`);
    await h.advance(1);
    assert.equal(h.transport.streams.length, before + 1, `after ${delay} ms`);
  }
  const healthy = h.transport.lastStream;
  healthy.ack(1);
  await h.advance(30_000);
  healthy.ack(2);
  healthy.end(GrpcCode.UNAVAILABLE, 'server restarted');
  await h.flush();
  const closed = h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1);
  assert.equal(closed?.reconnect_in_ms, fullJitterMs(FIRST_WAIT_AFTER_HEALTHY_CEILING_MS, random), 'two acks over one interval: the schedule starts over, its first wait drawn under 4 s');
  assert.equal(closed?.code, GrpcCode.UNAVAILABLE);
  assert.equal(h.transport.registers.length, 0, 'a dropped connection needs no new registration');
});

test('a stream acked once and then failed is not healthy: an appliance in a crash loop does not hold the agent on the first window', async (t) => {
  const random = () => 0.75;
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 30 * 86_400), random);
  await run(h);
  for (const ceiling of [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]) {
    const stream = h.transport.lastStream;
    stream.ack(1);
    // Acked at once and again before the interval ended: two acks, but not one interval.
    stream.ack(1);
    await h.advance(1000);
    stream.end(GrpcCode.INTERNAL, 'ERR_INTERNAL: database is locked');
    await h.flush();
    const delay = h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1)?.reconnect_in_ms as number;
    assert.equal(delay, fullJitterMs(ceiling, random), `the schedule goes on (ceiling ${ceiling} ms)`);
    await h.advance(delay);
  }
});

test('a stream ended for the host\'s message rate reconnects after the appliance\'s retry-after-ms hint, not the 1 s schedule step', async (t) => {
  const draws = [0, 0.75];
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 30 * 86_400), () => draws.shift() ?? 0);
  await run(h);
  h.transport.lastStream.ack(1);
  const before = h.transport.streams.length;
  const hint = new grpc.Metadata();
  hint.set(RETRY_AFTER_MS_METADATA, '25000');
  h.transport.lastStream.end(GrpcCode.RESOURCE_EXHAUSTED, 'ERR_STREAM_RATE_LIMITED: too many heartbeat messages or streams from this host; reconnect later', hint);
  await h.flush();
  const closed = h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1);
  assert.equal(closed?.retry_after_ms, 25_000);
  assert.equal(closed?.reconnect_in_ms, 25_000, 'the hint, plus jitter (none with this random source)');
  await h.advance(24_999);
  assert.equal(h.transport.streams.length, before, 'not before the hint');
  await h.advance(1);
  assert.equal(h.transport.streams.length, before + 1, 'at the hint');
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, 'Connection dropped');
  await h.flush();
  assert.equal(h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1)?.reconnect_in_ms, fullJitterMs(60_000, () => 0.75), 'without a hint the schedule goes on from the step reaching twice the 25 s waited (60 s)');
});

test('an expired JWT on the stream means registering again by key, then streaming with the new JWT', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  const fresh = fakeJwt(START_MS / 1000 + 86_400, 'fresh');
  h.transport.answers.push(active(fresh));
  await run(h);
  h.transport.lastStream.end(GrpcCode.UNAUTHENTICATED, 'ERR_JWT_EXPIRED: jwt expired');
  await h.flush();
  assert.equal(h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1)?.error_code, 'ERR_JWT_EXPIRED');
  await h.advance(1000);
  assert.equal(h.transport.registers.length, 1);
  assert.equal(h.transport.registers[0]?.org_token, '');
  assert.equal(h.transport.lastStream.jwt, fresh);
});

test('PERMISSION_DENIED on the stream asks Register once; REVOKED then exits 77', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_REVOKED' }));
  await run(h);
  h.transport.lastStream.ack(1);
  h.transport.lastStream.end(GrpcCode.PERMISSION_DENIED, 'ERR_AGENT_NOT_ACTIVE: revoked');
  await h.advance(1000);
  assert.equal((await h.exit).exitCode, 77);
  assert.equal(h.transport.registers.length, 1);
});

test('PERMISSION_DENIED then PENDING waits for approval rather than reconnecting', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_PENDING', retry_after_secs: 20 }));
  await run(h);
  h.transport.lastStream.end(GrpcCode.PERMISSION_DENIED, 'ERR_AGENT_NOT_ACTIVE: pending');
  await h.advance(1000);
  assert.equal(h.agent.state, 'awaiting-approval');
  assert.equal(h.transport.streams.length, 1);
});

test('ERR_IDENTITY_RETIRED on the stream: the key is moved aside, a new one registers with its proof and no token; once known the retired key is gone', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  h.transport.answers.push(answer({ agent_id: 'hst_2', status: 'AGENT_STATUS_PENDING', retry_after_secs: 20 }));
  await run(h);
  const dataDir = join(h.dir, 'data');
  const retiredPublicKey = Buffer.from(loadIdentity(dataDir, createLogger('silent')).keys.publicKey);
  h.transport.lastStream.ack(1);
  h.transport.lastStream.end(GrpcCode.PERMISSION_DENIED, 'ERR_IDENTITY_RETIRED: an admin kept another machine');
  await h.flush();
  assert.equal(h.transport.registers.length, 1);
  const request = h.transport.registers[0]!;
  assert.equal(request.org_token, '', 'the proof stands in for the enrolment token');
  assert.deepEqual(Buffer.from(request.predecessor_public_key as Uint8Array), retiredPublicKey);
  assert.notDeepEqual(Buffer.from(request.public_key as Uint8Array), retiredPublicKey, 'a new key');
  assert.ok(nacl.sign.detached.verify(successorProofPayload(request.public_key as Uint8Array), request.predecessor_signature as Uint8Array, retiredPublicKey), 'signed by the retired key');
  assert.equal(h.agent.state, 'awaiting-approval');
  assert.equal(existsSync(join(dataDir, 'retired_agent_key.pem')), false, 'removed once the appliance knows the new key');
  assert.equal(existsSync(join(dataDir, 'agent_state.json')), false, "the old host's credential is gone");
  await h.advance(20_000);
  assert.equal(h.transport.registers.length, 2);
  assert.equal(h.transport.registers[1]!.predecessor_public_key, undefined, 'later polls are by the new key alone');
});

test('an untrusted certificate on the stream stops the agent with ERR_INGEST_TLS_UNTRUSTED (78)', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, 'No connection established. Last error: Error: self-signed certificate in certificate chain');
  const exit = await h.exit;
  assert.equal(exit.error?.code, 'ERR_INGEST_TLS_UNTRUSTED');
  assert.equal(exit.exitCode, 78);
  assert.match(exit.error?.message ?? '', /ingest\.test:9443.*system CA roots/);
});

const THREE_ADDRESSES = 'addresses = ["a.test:9443", "b.test:9443", "c.test:9443"]';

/** The retry_in_ms / reconnect_in_ms of the last log line `msg`. */
function lastWait(h: Harness, msg: string): number {
  const event = h.events.filter((logged) => logged.msg === msg).at(-1);
  return Number(event?.retry_in_ms ?? event?.reconnect_in_ms);
}

test('with several ingest addresses a refused connection or a deadline moves the next attempt to the next address, round robin; a refused credential or throttling does not', async (t) => {
  const h = await start(t, undefined, () => 0, THREE_ADDRESSES);
  h.transport.answers.push(failure(GrpcCode.UNAVAILABLE, 'connect ECONNREFUSED'), failure(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'), active());
  await run(h);
  assert.equal(h.addresses.current.target, 'b.test:9443');
  assert.equal(h.events.filter((event) => event.msg === 'registration failed')[0]?.address, 'a.test:9443', 'the failure names the address it happened at');
  await h.advance(lastWait(h, 'registration failed'));
  assert.equal(h.addresses.current.target, 'c.test:9443');
  await h.advance(lastWait(h, 'registration failed'));
  assert.equal(h.agent.state, 'connecting');
  const starting = h.events.filter((event) => event.msg === 'starting heartbeat').at(-1);
  assert.deepEqual([starting?.address, starting?.address_index], ['c.test:9443', 2], 'the address in use is logged on connect');
  // The appliance refused the JWT: the same at every instance, so the agent re-registers where it is.
  h.transport.answers.push(active());
  h.transport.lastStream.end(GrpcCode.UNAUTHENTICATED, 'ERR_UNAUTHENTICATED: jwt expired');
  await h.advance(lastWait(h, 'heartbeat stream closed'));
  assert.equal(h.addresses.current.target, 'c.test:9443');
  h.transport.lastStream.end(GrpcCode.RESOURCE_EXHAUSTED, 'ERR_STREAM_RATE_LIMITED: too many messages');
  await h.advance(lastWait(h, 'heartbeat stream closed'));
  assert.equal(h.addresses.current.target, 'c.test:9443');
  // A stopping instance: the next connection goes to the first address again, after the stopping appliance's hint.
  const hint = new grpc.Metadata();
  hint.set(RETRY_AFTER_MS_METADATA, '5000');
  const streams = h.transport.streams.length;
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, 'ERR_INGEST_UNREACHABLE: the appliance is stopping', hint);
  await h.flush();
  assert.equal(h.addresses.current.target, 'a.test:9443');
  const wait = lastWait(h, 'heartbeat stream closed');
  assert.ok(wait >= 5000, `the stopping appliance's hint is honoured (waited ${wait} ms)`);
  await h.advance(wait - 1);
  assert.equal(h.transport.streams.length, streams);
  await h.advance(1);
  assert.equal(h.transport.streams.length, streams + 1);
});

test('with several ingest addresses an untrusted certificate moves to the next; it is fatal only once every address in turn refused trust', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600), () => 0, 'addresses = ["a.test:9443", "b.test:9443"]');
  await run(h);
  const tlsFailure = 'No connection established. Last error: Error: self-signed certificate in certificate chain';
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, tlsFailure);
  await h.flush();
  assert.equal(h.addresses.current.target, 'b.test:9443');
  assert.equal(h.agent.state, 'backing-off');
  await h.advance(lastWait(h, 'heartbeat stream closed'));
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, tlsFailure);
  const exit = await h.exit;
  assert.deepEqual([exit.exitCode, exit.error?.code], [78, 'ERR_INGEST_TLS_UNTRUSTED']);
  assert.match(exit.error?.message ?? '', /ingest b\.test:9443/);
});

test('with several ingest addresses a Register refused for an untrusted certificate is tried at the next address, then fatal when it is refused there too', async (t) => {
  const h = await start(t, undefined, () => 0, 'addresses = ["a.test:9443", "b.test:9443"]');
  const tlsFailure = 'No connection established. Last error: Error: unable to verify the first certificate';
  h.transport.answers.push(failure(GrpcCode.UNAVAILABLE, tlsFailure), failure(GrpcCode.UNAVAILABLE, tlsFailure));
  await run(h);
  assert.equal(h.agent.state, 'backing-off');
  assert.equal(h.addresses.current.target, 'b.test:9443');
  await h.advance(lastWait(h, 'registration failed'));
  const exit = await h.exit;
  assert.equal(h.transport.registers.length, 2);
  assert.deepEqual([exit.exitCode, exit.error?.code], [78, 'ERR_INGEST_TLS_UNTRUSTED']);
  assert.match(exit.error?.message ?? '', /ingest b\.test:9443/);
});

test('a refused enrolment token at first enrolment exits 78', async (t) => {
  const h = await start(t);
  h.transport.answers.push(failure(GrpcCode.UNAUTHENTICATED, 'ERR_TOKEN_EXPIRED: token expired'));
  await run(h);
  const exit = await h.exit;
  assert.deepEqual([exit.exitCode, exit.error?.code], [78, 'ERR_TOKEN_EXPIRED']);
});

test('an unreachable appliance and a stale clock are retried on the backoff schedule', async (t) => {
  const random = () => 0.75;
  const h = await start(t, undefined, random);
  h.transport.answers.push(failure(GrpcCode.UNAVAILABLE, 'connect ECONNREFUSED'), failure(GrpcCode.UNAUTHENTICATED, 'ERR_REGISTER_STALE: 6 min off'), active());
  await run(h);
  assert.equal(h.agent.state, 'backing-off');
  const [first, second] = [fullJitterMs(1000, random), fullJitterMs(2000, random)];
  assert.equal(h.events.filter((event) => event.msg === 'registration failed').at(-1)?.retry_in_ms, first);
  await h.advance(first);
  assert.equal(h.transport.registers.length, 2);
  assert.equal(h.events.filter((event) => event.msg === 'host clock differs from the appliance').length, 1);
  await h.advance(second - 1);
  assert.equal(h.transport.registers.length, 2);
  await h.advance(1);
  assert.equal(h.transport.registers.length, 3);
  assert.equal(h.agent.state, 'connecting');
});

/** The task reports carried by every heartbeat of a stream, flattened, as "task_id:PHASE[:error_code]". */
function reports(stream: FakeStream): string[] {
  return stream.sent.flatMap((request) => (request.task_updates ?? []).map((update) => [update.task_id, String(update.phase).replace('TASK_PHASE_', ''), update.error_code].filter(Boolean).join(':')));
}

function reloadTask(taskId: string): HeartbeatResponse__Output {
  return { kind: 'task', task: { task_id: taskId, timeout_ms: 60_000, kind: 'config_reload', config_reload: {} } };
}

test('config_reload runs as a task: acknowledged at once, the new interval applied, the outcome reported; an invalid file fails it and changes nothing', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  const stream = h.transport.lastStream;
  stream.ack(1);
  writeFileSync(h.configFile, readFileSync(h.configFile, 'utf8').replace('heartbeat_interval_secs = 30', 'heartbeat_interval_secs = 10'));
  stream.push(reloadTask('tsk_6b86b273ff34fce19d6b'));
  await h.flush();
  assert.deepEqual(reports(stream), ['tsk_6b86b273ff34fce19d6b:ACKNOWLEDGED', 'tsk_6b86b273ff34fce19d6b:RUNNING', 'tsk_6b86b273ff34fce19d6b:SUCCEEDED']);
  const done = stream.sent.at(-1);
  assert.equal(done?.task_updates?.at(-1)?.message, 'heartbeat_interval_secs=10');
  assert.equal(done?.interval_secs, 10, 'the heartbeat carrying the outcome already announces the new interval');
  assert.ok(h.messages().includes('config reloaded'));
  stream.ack(stream.sent.length);
  const count = stream.sent.length;
  await h.advance(10_000);
  assert.equal(stream.sent.length, count + 1, 'the next heartbeat follows the new interval');
  assert.deepEqual(stream.sent.at(-1)?.task_updates, [], 'acknowledged reports are not sent again');

  writeFileSync(h.configFile, '[ingest\nbroken');
  stream.push(reloadTask('tsk_d4735e3a265e16eee03f'));
  await h.flush();
  const failed = stream.sent.at(-1)?.task_updates?.at(-1);
  assert.equal(failed?.task_id, 'tsk_d4735e3a265e16eee03f');
  assert.equal(failed?.phase, 'TASK_PHASE_FAILED');
  assert.equal(failed?.error_code, 'ERR_CONFIG_INVALID');
  assert.match(failed?.message ?? '', /not valid TOML/);
  assert.equal(stream.sent.at(-1)?.interval_secs, 10, 'the previous configuration stays');
});

test('a task report whose heartbeat was never acked is sent again on the next stream', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  const stream = h.transport.lastStream;
  stream.ack(1);
  stream.push(reloadTask('tsk_19581e27de7ced00ff1c'));
  await h.flush();
  assert.deepEqual(reports(stream), ['tsk_19581e27de7ced00ff1c:ACKNOWLEDGED', 'tsk_19581e27de7ced00ff1c:RUNNING', 'tsk_19581e27de7ced00ff1c:SUCCEEDED']);
  stream.end(GrpcCode.UNAVAILABLE, 'gone');
  await h.advance(1000);
  const next = h.transport.lastStream;
  assert.deepEqual(reports(next), ['tsk_19581e27de7ced00ff1c:ACKNOWLEDGED', 'tsk_19581e27de7ced00ff1c:RUNNING', 'tsk_19581e27de7ced00ff1c:SUCCEEDED'], 'unacknowledged reports go out again, in order');
  next.ack(1);
  await h.advance(30_000);
  assert.deepEqual(next.sent[1]?.task_updates, [], 'acknowledged reports are not sent again');
});

test('a task delivered again (a stream dropped before the appliance saw the ack) is answered, never run twice — across a restart too', async (t) => {
  let runs = 0;
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  h.transport.lastStream.ack(1);
  writeFileSync(h.configFile, readFileSync(h.configFile, 'utf8').replace('heartbeat_interval_secs = 30', 'heartbeat_interval_secs = 20'));
  h.transport.lastStream.push(reloadTask('tsk_200651a8b2d5912f692d'));
  await h.flush();
  runs = h.messages().filter((message) => message === 'config reloaded').length;
  assert.equal(runs, 1);
  h.transport.lastStream.push(reloadTask('tsk_200651a8b2d5912f692d'));
  await h.flush();
  assert.equal(h.messages().filter((message) => message === 'config reloaded').length, 1, 'the repeat is not run');
  assert.deepEqual(h.transport.lastStream.sent.at(-1)?.task_updates?.map((update) => update.phase), ['TASK_PHASE_SUCCEEDED'], 'the repeat is answered with the outcome');
  const ledger = JSON.parse(readFileSync(join(h.dir, 'data', 'tasks.json'), 'utf8'));
  assert.deepEqual(ledger.tasks.map((entry: { id: string; phase: string }) => [entry.id, entry.phase]), [['tsk_200651a8b2d5912f692d', 'succeeded']]);

  // A second agent on the same data directory (a restart) still recognises the task.
  h.agent.stop('SIGTERM');
  await h.exit;
  t.mock.timers.reset();
  const again = await start(t, (dataDir) => {
    cpSync(join(h.dir, 'data'), dataDir, { recursive: true });
  });
  await run(again);
  again.transport.lastStream.push(reloadTask('tsk_200651a8b2d5912f692d'));
  await again.flush();
  assert.ok(!again.messages().includes('config reloaded'), 'not run after a restart either');
  assert.ok(reports(again.transport.lastStream).includes('tsk_200651a8b2d5912f692d:SUCCEEDED'));
});

test('a task the agent was running when it stopped is reported failed with ERR_TASK_INTERRUPTED at the next start, not run again', async (t) => {
  const h = await start(t, (dataDir) => {
    saveState(dataDir, START_MS / 1000 + 3600);
    writeFileSync(join(dataDir, 'tasks.json'), JSON.stringify({ version: 1, tasks: [{ id: 'tsk_378bfce5cda2599a6cda', type: 'software_inventory', phase: 'running', receivedAt: START_MS - 1000, delivered: false }] }));
  });
  await run(h);
  assert.deepEqual(reports(h.transport.lastStream), ['tsk_378bfce5cda2599a6cda:FAILED:ERR_TASK_INTERRUPTED']);
  h.transport.lastStream.ack(1);
  await h.flush();
  const ledger = JSON.parse(readFileSync(join(h.dir, 'data', 'tasks.json'), 'utf8'));
  assert.equal(ledger.tasks[0].delivered, true, 'the outcome reached the appliance: it is not sent again');
});

test('an unreadable task ledger is set aside, not fatal', async (t) => {
  const h = await start(t, (dataDir) => {
    saveState(dataDir, START_MS / 1000 + 3600);
    writeFileSync(join(dataDir, 'tasks.json'), '{ torn');
  });
  await run(h);
  assert.equal(h.agent.state, 'connecting');
  assert.ok(h.messages().includes('task ledger unreadable; starting a new one'));
  assert.ok(readdirSync(join(h.dir, 'data')).some((name) => name.startsWith('tasks.json.unreadable-')));
});

test('a task of a kind this agent does not know fails with ERR_TASK_UNSUPPORTED', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  h.transport.lastStream.push({ kind: 'task', task: { task_id: 'tsk_2d711642b726b0440162', timeout_ms: 1000 } });
  await h.flush();
  assert.deepEqual(reports(h.transport.lastStream).slice(-1), ['tsk_2d711642b726b0440162:FAILED:ERR_TASK_UNSUPPORTED']);
});

test('a pushed credential is saved atomically and used for the next connection', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  const refreshed = fakeJwt(START_MS / 1000 + 90_000, 'refreshed');
  h.transport.lastStream.ack(1);
  h.transport.lastStream.push({ kind: 'credential', credential: { jwt: refreshed, jwt_expires_unix: START_MS / 1000 + 90_000 } });
  const saved = JSON.parse(readFileSync(join(h.dir, 'data', 'agent_state.json'), 'utf8'));
  assert.deepEqual(saved, { agent_id: 'hst_1', jwt: refreshed, jwt_expires_unix: START_MS / 1000 + 90_000 });
  assert.ok(h.messages().includes('credential refreshed'));
  assert.ok(h.rawLog.every((line) => !line.includes(refreshed)));
  h.transport.lastStream.end(GrpcCode.UNAVAILABLE, 'restart');
  await h.advance(1000);
  assert.equal(h.transport.lastStream.jwt, refreshed);
});

test('no ack for three intervals cancels the stream and reconnects', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  const silent = h.transport.lastStream;
  await h.advance(89_999);
  assert.equal(silent.closed, false);
  await h.advance(1);
  assert.equal(silent.closed, true);
  assert.ok(h.messages().includes('no heartbeat ack; reconnecting'));
  assert.equal(h.events.filter((event) => event.msg === 'heartbeat stream closed').at(-1)?.ack_timeout, true);
  await h.advance(1000);
  assert.equal(h.transport.streams.length, 2);
});

test('acks keep a stream alive past three intervals', async (t) => {
  const h = await start(t, (dataDir) => saveState(dataDir, START_MS / 1000 + 3600));
  await run(h);
  const stream = h.transport.lastStream;
  for (let i = 0; i < 6; i += 1) {
    stream.ack(stream.sent.length);
    await h.advance(30_000);
  }
  assert.equal(stream.closed, false);
  assert.equal(h.transport.streams.length, 1);
});

test('SIGTERM while waiting for approval exits 0 and abandons the wait', async (t) => {
  const h = await start(t);
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_PENDING' }));
  await run(h);
  h.agent.stop('SIGTERM');
  assert.deepEqual(await h.exit, { exitCode: 0, error: undefined });
  await h.advance(60_000);
  assert.equal(h.transport.registers.length, 1);
});

test('a damaged private key stops the agent with ERR_DATA_DIR_UNUSABLE before any registration', async (t) => {
  const h = await start(t, (dataDir) => {
    saveState(dataDir, START_MS / 1000 + 3600);
    writeFileSync(join(dataDir, 'agent_key.pem'), 'garbage');
  });
  await run(h);
  const exit = await h.exit;
  assert.deepEqual([exit.error?.code, exit.exitCode], ['ERR_DATA_DIR_UNUSABLE', 73]);
  assert.equal(h.transport.registers.length + h.transport.streams.length, 0);
  assert.ok(existsSync(join(h.dir, 'data', 'agent_state.json')));
});

test('a freshly issued JWT with less than a minute to live is used at once, not re-registered in a loop', async (t) => {
  const h = await start(t);
  const shortLived = START_MS / 1000 + 12;
  h.transport.answers.push(answer({ status: 'AGENT_STATUS_ACTIVE', jwt: fakeJwt(shortLived), jwt_expires_unix: shortLived }));
  await run(h);
  assert.equal(h.transport.registers.length, 1);
  assert.equal(h.agent.state, 'connecting');
  assert.equal(h.transport.streams.length, 1);
});
