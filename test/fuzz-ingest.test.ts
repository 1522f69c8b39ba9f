/**
 * Fuzzing of the ingest port (issue 14): every RPC of the IngestService contract gets messages
 * generated from the contract's own field types (hostile text, bytes of every telling length,
 * integers at their bounds, repeated and nested fields, missing fields), correctly signed Registers
 * with hostile content and stale or future timestamps, wrong credentials, and raw frames no client
 * would send (garbage, truncated, lying lengths, compression flags). One real appliance over TLS on
 * loopback takes them all. Each call must end within its deadline with a proper status: the
 * catalogue's status for the code its details name, or one of the few answers grpc-js or HTTP/2
 * give a broken call before any code of ours runs (PROTOCOL_STATUSES, TRANSPORT_INTERNAL, a reset
 * for a header list over the announced size); never UNKNOWN or INTERNAL otherwise, which would be
 * the appliance's own fault. Afterwards the appliance still enrols and acknowledges an honest
 * agent, and once stopped its database passes PRAGMA integrity_check (ct-ops-appliance doctor).
 * Bounded for CI: a fixed seed and run count (FUZZ_SEED, FUZZ_RUNS override them).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import nacl from 'tweetnacl';
import { codeFromGrpcDetails, GrpcCode, STATUS } from '../common/errors.ts';
import { registerPayload, toRegisterRequest, type RegisterFreshness, type RegisterPayloadFields } from '../common/register-payload.ts';
import { UNARY_ARRIVAL_MS } from '../appliance/grpc/request-arrival.ts';
import { callGetRegisterChallenge, callRegister, HeartbeatStream, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { useIngestFixture, type Enrolled } from './helpers/ingest-fixture.ts';
import { encodeMessage, fuzzSettings, hostileString, ingestTypes, protoMessage } from './helpers/fuzz.ts';
import { grpcFrame, rawGrpcExchange, type RawGrpcExchange } from './helpers/raw-grpc.ts';
import { waitFor } from './helpers/wait.ts';

/** How long one fuzzed call may take to answer: generous on a loaded 2-core CI machine, far below a hang. */
const CALL_DEADLINE_MS = 10_000;
/** Hosts the authenticated cases spread over, so each host's heartbeat rate (a burst of 30) lasts the run. */
const POOL_HOSTS = 16;
/**
 * Statuses grpc-js answers by itself, without a catalogue code, to a call that breaks the protocol:
 * UNIMPLEMENTED (a unary call with no message or two), RESOURCE_EXHAUSTED (a frame over the 4 MiB
 * receive limit), DEADLINE_EXCEEDED (the deadline the caller set, grpc-timeout, passed); OK is a
 * success or a stream the peer ended cleanly.
 */
const PROTOCOL_STATUSES: ReadonlySet<number> = new Set([GrpcCode.OK, GrpcCode.UNIMPLEMENTED, GrpcCode.RESOURCE_EXHAUSTED, GrpcCode.DEADLINE_EXCEEDED]);
/** Statuses that say the appliance itself failed: no input of a peer may cause one. */
const FAULT_STATUSES: ReadonlySet<number> = new Set([GrpcCode.UNKNOWN, GrpcCode.INTERNAL]);
/** Node's default SETTINGS_MAX_HEADER_LIST_SIZE, which grpc-js's server (and so the appliance) announces. */
const HTTP2_MAX_HEADER_LIST_BYTES = 65_535;
/**
 * The two INTERNAL answers grpc-js gives by itself to a call broken below the message layer, before
 * any interceptor or handler of ours runs (no public hook reaches them): a malformed grpc-timeout
 * header, and a message flagged compressed that does not decompress. grpc-go answers both INTERNAL
 * as well (the transport's status for a malformed call); they are matched by their exact details.
 */
const TRANSPORT_INTERNAL = /^(Invalid grpc-timeout value "[^"]*"|Failed to decompress message)$/;

const types = ingestTypes();
const typeOf = (name: string) => types.lookupType(`ctops.ingest.v1.${name}`);
const METHODS = { Register: 'RegisterRequest', GetRegisterChallenge: 'RegisterChallengeRequest', Heartbeat: 'HeartbeatRequest', SubmitSoftwareInventory: 'SoftwareInventoryChunk' } as const;
type Method = keyof typeof METHODS;

/** How the calls of the running fuzz ended (status and catalogue code), printed so a run shows what the fuzz reached. */
const endings = new Map<string, number>();

/** Runs `check` on `runs` cases of `cases` (fuzzSettings: fixed seed, FUZZ_SEED/FUZZ_RUNS), then prints how the calls ended. */
async function fuzz<T>(what: string, runs: number, cases: fc.Arbitrary<T>, check: (value: T) => Promise<void>): Promise<void> {
  const settings = fuzzSettings(what, runs);
  endings.clear();
  try {
    await fc.assert(fc.asyncProperty(cases, check), settings);
  } finally {
    console.log(`${what} endings: ${JSON.stringify(Object.fromEntries([...endings].sort(([, a], [, b]) => b - a)))}`);
  }
}

/** Asserts that a call ended in time with a proper status. */
function assertProperStatus(outcome: RawGrpcExchange, what: string): void {
  const ending = `${outcome.status}:${codeFromGrpcDetails(outcome.message) ?? outcome.message?.replace(/\d+/g, 'N').slice(0, 40)}`;
  endings.set(ending, (endings.get(ending) ?? 0) + 1);
  const shown = `${what}: ${JSON.stringify(outcome)}`;
  assert.ok(!outcome.timedOut, `no status within ${CALL_DEADLINE_MS} ms (a hang): ${shown}`);
  // Metadata past the header list size the appliance's HTTP/2 server announces is refused by HTTP/2
  // itself, with a stream reset, before there is a call to answer (RFC 9113 10.5.1).
  if (outcome.failure === 'ERR_HTTP2_STREAM_ERROR' && outcome.status === undefined && outcome.requestHeaderBytes > HTTP2_MAX_HEADER_LIST_BYTES) return;
  assert.equal(outcome.failure, undefined, `the call failed without a status: ${shown}`);
  assert.equal(outcome.httpStatus, 200, shown);
  const status = Number(outcome.status);
  assert.ok(outcome.status !== undefined && Number.isInteger(status), `no grpc-status: ${shown}`);
  const code = codeFromGrpcDetails(outcome.message);
  if (status === GrpcCode.INTERNAL && code === undefined && TRANSPORT_INTERNAL.test(outcome.message ?? '')) return;
  assert.ok(!FAULT_STATUSES.has(status), `a fault status for a peer's input: ${shown}`);
  if (code === undefined) assert.ok(PROTOCOL_STATUSES.has(status), `grpc-status ${status} without a catalogue code: ${shown}`);
  else assert.equal(status, STATUS[code].grpc, `${code} answered with another status than the catalogue's: ${shown}`);
}

/** A fresh loopback source per Register-like call, so the per-source failure budget (50 per 30 s) never throttles the fuzz into one answer. */
let sourceCounter = 0;
function nextSource(): string {
  sourceCounter += 1;
  return `127.77.${(sourceCounter >> 8) & 0xff}.${(sourceCounter & 0xff) || 1}`;
}

/** A timestamp shift: none, minutes, a day, years, before the epoch. */
const clockShiftMs = fc.constantFrom(0, 0, -6 * 60_000, 6 * 60_000, -86_400_000, 86_400_000, -Date.now() - 1, 10 * 365 * 86_400_000);
const saneOr = (sane: string) => fc.oneof({ weight: 12, arbitrary: fc.constant(sane) }, { weight: 1, arbitrary: hostileString });

describe('fuzzing the ingest RPCs of one real appliance: every call ends within its deadline with a catalogue status', () => {
  // Info, as in production: debug would log every refused message.
  const ingest = useIngestFixture({ env: { CT_OPS_APPLIANCE_LOG_LEVEL: 'info' } });
  const pool: Enrolled[] = [];
  let orgToken = '';
  const call = (method: Method | string, payload: Buffer, headers: Record<string, string> = {}, localAddress = nextSource()) =>
    rawGrpcExchange(ingest.appliance.grpcPort, ingest.appliance.caCert, method, payload, { headers, localAddress, timeoutMs: CALL_DEADLINE_MS });

  async function hostPool(): Promise<Enrolled[]> {
    if (pool.length === 0) {
      orgToken = (await ingest.appliance.createToken('--auto-approve', '--max-uses', '10000')).token;
      const enrolled = await Promise.all(
        Array.from({ length: POOL_HOSTS }, async (_, index) => {
          const identity = newIdentity(`fuzz-pool-${index}`);
          const registered = await callRegister(ingest.client, signedRegister(identity, orgToken));
          assert.ok(registered.ok && registered.value.status === 'AGENT_STATUS_ACTIVE', JSON.stringify(registered));
          return { hostId: registered.value.agent_id, jwt: registered.value.jwt, identity, token: orgToken };
        }),
      );
      pool.push(...enrolled);
    }
    return pool;
  }

  /** A Register signed by a key from `seed` over hostile content: the signature holds, so the checks behind it are reached. */
  const signedHostileRegister = fc.record({
    seed: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    token: fc.oneof({ weight: 4, arbitrary: fc.constant('valid') }, fc.constant(''), hostileString),
    hostname: saneOr('fuzz-host'),
    machineFingerprint: saneOr('a'.repeat(64)),
    os: saneOr('linux'),
    arch: saneOr('x64'),
    agentVersion: saneOr('0.1.0'),
    tags: fc.oneof({ weight: 3, arbitrary: fc.constant({}) }, fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_-]{0,15}$/), fc.string({ maxLength: 20 }), { maxKeys: 3 }), fc.dictionary(hostileString, hostileString, { maxKeys: 4 })),
    // The appliance's own challenge (fetched when the case runs), a forged one, or the legacy timestamp and nonce.
    freshness: fc.oneof(
      { weight: 2, arbitrary: fc.constant({ issued: true as const }) },
      { weight: 1, arbitrary: fc.record({ challenge: fc.oneof(fc.uint8Array({ minLength: 57, maxLength: 57 }), fc.uint8Array({ maxLength: 80 })) }) },
      { weight: 2, arbitrary: fc.record({ shiftMs: clockShiftMs, nonce: fc.oneof({ weight: 3, arbitrary: fc.uint8Array({ minLength: 16, maxLength: 16 }) }, fc.uint8Array({ maxLength: 20 })) }) },
    ),
    unsigned: fc.oneof(
      { weight: 3, arbitrary: fc.constant({}) },
      protoMessage(typeOf('RegisterRequest')).map(({ install_bundle_id, predecessor_public_key, predecessor_signature, rotation_nonce }) => ({ install_bundle_id, predecessor_public_key, predecessor_signature, rotation_nonce })),
    ),
  });

  async function signedRegisterBytes(input: typeof signedHostileRegister extends fc.Arbitrary<infer T> ? T : never): Promise<Buffer> {
    const keyPair = nacl.sign.keyPair.fromSeed(input.seed);
    let freshness: RegisterFreshness;
    if ('issued' in input.freshness) {
      const issued = await callGetRegisterChallenge(ingest.client);
      assert.ok(issued.ok, JSON.stringify(issued));
      freshness = { challenge: issued.value.challenge };
    } else if ('challenge' in input.freshness) freshness = { challenge: input.freshness.challenge };
    else freshness = { timestampUnixMs: Math.max(0, Date.now() + input.freshness.shiftMs), nonce: input.freshness.nonce };
    const fields: RegisterPayloadFields = {
      publicKey: keyPair.publicKey,
      orgToken: input.token === 'valid' ? orgToken : input.token,
      hostname: input.hostname,
      machineFingerprint: input.machineFingerprint,
      os: input.os,
      arch: input.arch,
      agentVersion: input.agentVersion,
      tags: input.tags,
      ...freshness,
    };
    const request = toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), keyPair.secretKey));
    const unsigned = Object.fromEntries(Object.entries(input.unsigned).filter(([, value]) => value !== undefined));
    return encodeMessage(typeOf('RegisterRequest'), { ...request, ...unsigned });
  }

  test('Register: generated messages and correctly signed hostile ones each get a proper status', { timeout: 120_000 }, async () => {
    await hostPool();
    const registerCase = fc.oneof(
      { weight: 1, arbitrary: protoMessage(typeOf('RegisterRequest')).map((message) => ({ message, signed: undefined })) },
      { weight: 3, arbitrary: signedHostileRegister.map((signed) => ({ message: undefined, signed })) },
    );
    await fuzz('Register', 300, registerCase, async ({ message, signed }) => {
      const bytes = signed ? await signedRegisterBytes(signed) : encodeMessage(typeOf('RegisterRequest'), message!);
      assertProperStatus(await call('Register', grpcFrame(bytes)), 'Register');
    });
  });

  test('GetRegisterChallenge: any bytes as its (empty) request get a challenge or a refusal', { timeout: 60_000 }, async () => {
    await fuzz('GetRegisterChallenge', 60, fc.uint8Array({ maxLength: 2048 }), async (bytes) => {
      assertProperStatus(await call('GetRegisterChallenge', grpcFrame(Buffer.from(bytes))), 'GetRegisterChallenge');
    });
  });

  /** The authorization of a call: a pool host's JWT, none, a hostile one, or one with its signature changed. */
  const authorization = fc.oneof(
    { weight: 6, arbitrary: fc.nat({ max: POOL_HOSTS - 1 }).map((index) => ({ host: index, header: undefined as string | undefined })) },
    { weight: 1, arbitrary: fc.constant({ host: 0, header: '' }) },
    { weight: 1, arbitrary: hostileString.map((text) => ({ host: 0, header: `Bearer ${text.replace(/[^\x20-\x7e]/g, '')}` })) },
    { weight: 1, arbitrary: fc.nat({ max: POOL_HOSTS - 1 }).map((index) => ({ host: index, header: 'tampered' })) },
  );

  function headersFor(auth: { host: number; header: string | undefined }): Record<string, string> {
    const host = pool[auth.host]!;
    if (auth.header === undefined) return { authorization: `Bearer ${host.jwt}` };
    if (auth.header === 'tampered') return { authorization: `Bearer ${host.jwt.slice(0, -4)}${host.jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA'}` };
    return auth.header === '' ? {} : { authorization: auth.header };
  }

  test('Heartbeat: streams of generated and nearly valid heartbeats, with good and bad credentials, each end with a proper status', { timeout: 120_000 }, async () => {
    await hostPool();
    const heartbeatType = typeOf('HeartbeatRequest');
    const message = fc.oneof(
      protoMessage(heartbeatType).map((fields) => ({ fields, nearlyValid: false })),
      // A valid heartbeat of the host with some fields replaced: the checks past the first one are reached.
      protoMessage(heartbeatType).chain((fields) => fc.subarray(Object.keys(fields)).map((keep) => ({ fields: Object.fromEntries(keep.map((key) => [key, fields[key]])), nearlyValid: true }))),
    );
    const streamCase = fc.record({ auth: authorization, messages: fc.array(message, { minLength: 0, maxLength: 3 }), reportOnly: fc.boolean() });
    await fuzz('Heartbeat', 150, streamCase, async ({ auth, messages, reportOnly }) => {
      const host = pool[auth.host]!;
      const frames = messages.map(({ fields, nearlyValid }, index) => {
        const base = { agent_id: host.hostId, cpu_percent: 10, memory_percent: 20, disk_percent: 30, uptime_seconds: 100, timestamp_unix: Math.floor(Date.now() / 1000), timestamp_unix_ms: Date.now(), sequence: index + 1, interval_secs: 30, agent_version: '0.1.0' };
        return grpcFrame(encodeMessage(heartbeatType, nearlyValid ? { ...base, ...fields } : fields));
      });
      const headers = { ...headersFor(auth), ...(reportOnly ? { 'x-ct-ops-report-only': '1' } : {}) };
      assertProperStatus(await call('Heartbeat', Buffer.concat(frames), headers), 'Heartbeat');
    });
  });

  test('SubmitSoftwareInventory: streams of generated chunks, with good and bad credentials, each end with a proper status', { timeout: 120_000 }, async () => {
    await hostPool();
    const chunkType = typeOf('SoftwareInventoryChunk');
    const packageType = typeOf('SoftwarePackage');
    const packages = fc.array(fc.oneof({ weight: 3, arbitrary: fc.record({ name: fc.string({ minLength: 1, maxLength: 12 }), version: fc.string({ maxLength: 8 }), source: fc.constantFrom('dpkg', 'rpm') }) }, protoMessage(packageType)), { maxLength: 8 });
    type GeneratedChunk = { fields: Record<string, unknown>; nearlyValid: boolean };
    const chunk: fc.Arbitrary<GeneratedChunk> = fc.oneof(
      { weight: 1, arbitrary: protoMessage(chunkType).map((fields) => ({ fields, nearlyValid: false })) },
      // A plausible chunk of the host's scan (its place in the stream, is_last on the last) with its
      // packages, and now and then one generated field in place of its own.
      {
        weight: 3,
        arbitrary: fc.tuple(packages, protoMessage(chunkType)).chain(([ownPackages, fields]) =>
          fc.subarray(Object.keys(fields), { maxLength: Math.min(1, Object.keys(fields).length) }).map((keep) => ({ fields: { packages: ownPackages, ...Object.fromEntries(keep.map((key) => [key, fields[key]])) }, nearlyValid: true })),
        ),
      },
    );
    const scanId = fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9_.:-]{8,20}$/) }, hostileString);
    const streamCase = fc.record({ auth: authorization, scanId, chunks: fc.oneof({ weight: 1, arbitrary: fc.constant<GeneratedChunk[]>([]) }, { weight: 6, arbitrary: fc.array(chunk, { minLength: 1, maxLength: 3 }) }) });
    await fuzz('SubmitSoftwareInventory', 150, streamCase, async ({ auth, scanId, chunks }) => {
      const host = pool[auth.host]!;
      const frames = chunks.map(({ fields, nearlyValid }, index) => {
        const place = { agent_id: host.hostId, scan_id: scanId, task_id: '', chunk_index: index, is_last: index === chunks.length - 1 };
        return grpcFrame(encodeMessage(chunkType, nearlyValid ? { ...place, ...fields } : fields));
      });
      assertProperStatus(await call('SubmitSoftwareInventory', Buffer.concat(frames), headersFor(auth)), 'SubmitSoftwareInventory');
    });
  });

  test('raw frames on every method (garbage, mutated messages, truncated frames, lying lengths, compression flags, odd headers) each get a proper status', { timeout: 120_000 }, async () => {
    await hostPool();
    const method = fc.constantFrom(...(Object.keys(METHODS) as Method[]));
    /** A valid encoding of a generated message of the method, then bytes flipped, cut or appended. */
    const mutated = (name: Method) =>
      protoMessage(typeOf(METHODS[name])).chain((fields) => {
        const bytes = encodeMessage(typeOf(METHODS[name]), fields);
        return fc.record({ flips: fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { maxLength: 4 }), cut: fc.nat({ max: bytes.length }), tail: fc.uint8Array({ maxLength: 8 }) }).map(({ flips, cut, tail }) => {
          const copy = Buffer.from(bytes);
          for (const [at, value] of flips) if (copy.length > 0) copy[at % copy.length] = value;
          return Buffer.concat([copy.subarray(0, cut === 0 ? copy.length : cut), tail]);
        });
      });
    const body = (name: Method) => fc.oneof(fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes)), mutated(name));
    const frame = (name: Method) =>
      fc.oneof(
        { weight: 4, arbitrary: body(name).map((bytes) => grpcFrame(bytes)) },
        // The compression flag set (or neither 0 nor 1) on bytes that are not compressed, or on gzip of them.
        { weight: 1, arbitrary: fc.tuple(body(name), fc.constantFrom(1, 1, 1, 2, 128, 255)).map(([bytes, flag]) => grpcFrame(bytes, flag)) },
        { weight: 1, arbitrary: body(name).map((bytes) => grpcFrame(gzipSync(bytes), 1)) },
        // A length prefix promising more than follows (the call ends inside the frame), or only part of a prefix.
        { weight: 1, arbitrary: fc.tuple(body(name), fc.integer({ min: 1, max: 100_000 })).map(([bytes, extra]) => { const whole = grpcFrame(bytes); whole.writeUInt32BE(bytes.length + extra, 1); return whole; }) },
        { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 4 }).map((bytes) => Buffer.from(bytes)) },
      );
    const header = fc.oneof(
      fc.constant({}),
      fc.constantFrom('gzip', 'deflate', 'identity', 'snappy', '').map((encoding): Record<string, string> => ({ 'grpc-encoding': encoding })),
      fc.constantFrom('1S', '0n', '99999999H', 'x', '-1m', '123456789S').map((timeout): Record<string, string> => ({ 'grpc-timeout': timeout })),
      fc.constantFrom('application/grpc+proto', 'application/grpc; charset=utf-8').map((type): Record<string, string> => ({ 'content-type': type })),
    );
    const rawCase = method.chain((name) => fc.record({ name: fc.constant(name), frames: fc.array(frame(name), { maxLength: 3 }), header, authorized: fc.boolean(), host: fc.nat({ max: POOL_HOSTS - 1 }) }));
    await fuzz('raw frames', 400, rawCase, async ({ name, frames, header, authorized, host }) => {
      const headers = { ...(authorized ? { authorization: `Bearer ${pool[host]!.jwt}` } : {}), ...header };
      assertProperStatus(await call(name, Buffer.concat(frames), headers), `${name} raw`);
    });
  });

  test('a Register or challenge request that never fully arrives is answered ERR_INVALID_ARGUMENT (request_incomplete) once its bound has passed, not held for ever', { timeout: 60_000 }, async () => {
    // The fuzz's counterexample, kept: a frame promising 100 bytes with 2 sent, the call left open
    // (no END_STREAM), was held as long as the connection lived; so was a call that sent nothing.
    const started = Date.now();
    const promised = grpcFrame(Buffer.from([0x0a, 0x01]));
    promised.writeUInt32BE(100, 1);
    const stalled = (method: Method, payload: Buffer) =>
      rawGrpcExchange(ingest.appliance.grpcPort, ingest.appliance.caCert, method, payload, { localAddress: nextSource(), endStream: false, timeoutMs: UNARY_ARRIVAL_MS + 10_000 });
    const answers = await Promise.all([stalled('Register', promised), stalled('GetRegisterChallenge', Buffer.alloc(0))]);
    for (const answer of answers) {
      assertProperStatus(answer, 'a stalled unary call');
      assert.equal(answer.status, String(GrpcCode.INVALID_ARGUMENT));
      assert.match(answer.message ?? '', /^ERR_INVALID_ARGUMENT: the request did not arrive within 20 s$/);
    }
    assert.ok(Date.now() - started >= UNARY_ARRIVAL_MS - 1_000, 'not before the bound');
  });

  test('after the fuzz the appliance is alive, enrols and acknowledges an honest agent, and its stopped database passes integrity_check', { timeout: 60_000 }, async () => {
    assert.ok(ingest.appliance.process.running, 'the appliance process is alive');
    const fatal = ingest.appliance.process.events.filter((event) => (event.level ?? 0) >= 50);
    assert.deepEqual(fatal, [], 'no error or fatal was logged: nothing a peer sent was the appliance\'s fault');
    const { token } = await ingest.appliance.createToken('--auto-approve');
    const identity = newIdentity('after-fuzz');
    const registered = await callRegister(ingest.client, signedRegister(identity, token));
    assert.ok(registered.ok, JSON.stringify(registered));
    const stream = new HeartbeatStream(ingest.client, registered.value.jwt);
    stream.send(registered.value.agent_id, 1);
    await waitFor('the honest heartbeat is acknowledged', () => stream.acks().includes(1));
    stream.call.end();
    await stream.ended;
    const stopped = await ingest.appliance.process.stop();
    assert.deepEqual(stopped, { code: 0, signal: null }, ingest.appliance.process.stderr.slice(-2000));
    const doctor = await ingest.appliance.cli('doctor', '--json');
    const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; status: string; detail: string }> }).checks;
    const database = checks.find((check) => check.name === 'database');
    assert.equal(database?.status, 'ok', JSON.stringify(database));
    assert.match(database!.detail, /integrity ok/);
  });
});
