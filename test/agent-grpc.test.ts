// The real gRPC transport, TLS probe and CLI against a minimal in-test ingest server
// (TLS with a throwaway CA made by openssl). The appliance's own e2e tests cover the
// real server; these prove the agent's side of the wire and its exit codes.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { GrpcCode } from '../common/errors.ts';
import { loadIngestProto, type HeartbeatRequest__Output, type RegisterRequest__Output, type RegisterResponse } from '../common/proto.ts';
import { registerPayload } from '../common/register-payload.ts';
import { parseIngestAddress } from '../agent/config/address.ts';
import { IngestAddresses } from '../agent/transport/addresses.ts';
import { isTlsTrustFailure, type IngestEndpoint } from '../agent/transport/failure.ts';
import type { IngestTransport } from '../agent/transport/types.ts';
import { createGrpcTransport } from '../agent/transport/grpc-transport.ts';
import { RETRY_FLOOR_MS } from '../agent/lifecycle/backoff.ts';
import { probeIngestTls } from '../agent/transport/tls-probe.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-agent-grpc-'));
const repo = join(import.meta.dirname, '..');

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function makeCa(name: string): void {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/CN=${name}`, '-days', '1', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign');
}

interface Received {
  registers: RegisterRequest__Output[];
  heartbeats: HeartbeatRequest__Output[];
  authorizations: string[];
}

const received: Received = { registers: [], heartbeats: [], authorizations: [] };
/** What the next Register answers; tests change it. */
let registerAnswer: RegisterResponse = { agent_id: 'hst_e2e', status: 'AGENT_STATUS_ACTIVE', jwt: 'h.p.s', jwt_expires_unix: Math.floor(Date.now() / 1000) + 86_400 };
let server: grpc.Server;
let port = 0;

before(async () => {
  makeCa('ca');
  makeCa('other-ca');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '1', '-extfile', 'ext.cnf');
  const service = loadIngestProto().ctops.ingest.v1.IngestService.service;
  server = new grpc.Server();
  server.addService(service, {
    Register(call: grpc.ServerUnaryCall<RegisterRequest__Output, RegisterResponse>, callback: grpc.sendUnaryData<RegisterResponse>) {
      const request = call.request;
      received.registers.push(request);
      const payload = registerPayload({
        publicKey: request.public_key, orgToken: request.org_token, hostname: request.hostname, machineFingerprint: request.machine_fingerprint,
        os: request.os, arch: request.arch, agentVersion: request.agent_version, timestampUnixMs: request.timestamp_unix_ms, nonce: request.nonce, tags: request.tags,
      });
      if (!nacl.sign.detached.verify(payload, request.signature, request.public_key)) {
        callback({ code: GrpcCode.UNAUTHENTICATED, details: 'ERR_REGISTER_SIGNATURE_INVALID: bad signature' });
        return;
      }
      callback(null, registerAnswer);
    },
    Heartbeat(call: grpc.ServerDuplexStream<HeartbeatRequest__Output, unknown>) {
      received.authorizations.push(String(call.metadata.get('authorization')[0]));
      call.on('data', (request: HeartbeatRequest__Output) => {
        received.heartbeats.push(request);
        call.write({ ack: { sequence: request.sequence, received_unix_ms: Date.now() } });
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
    SubmitSoftwareInventory(_call: unknown, callback: grpc.sendUnaryData<unknown>) {
      callback({ code: GrpcCode.UNIMPLEMENTED });
    },
  });
  const credentials = grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(join(dir, 'server.key')), cert_chain: readFileSync(join(dir, 'server.crt')) }]);
  port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', credentials, (error, bound) => (error ? reject(error) : resolve(bound))));
});

after(() => {
  server?.forceShutdown();
  rmSync(dir, { recursive: true, force: true });
});

function ingest(ca: 'ca' | 'other-ca', host = '127.0.0.1'): IngestEndpoint & { caPem: string } {
  const caCertFile = join(dir, `${ca}.crt`);
  return { address: parseIngestAddress(`${host}:${port}`, 'test'), caCertFile, caPem: readFileSync(caCertFile, 'utf8') };
}

/** The gRPC transport to the one address of `endpoint`, trusting its CA. */
function transportTo(endpoint: IngestEndpoint & { caPem: string }): IngestTransport {
  return createGrpcTransport(new IngestAddresses([endpoint.address]), () => endpoint.caPem);
}

function signedRequest() {
  const pair = nacl.sign.keyPair();
  const fields = { publicKey: pair.publicKey, orgToken: 'tok', hostname: 'h', machineFingerprint: 'f', os: 'linux', arch: 'x64', agentVersion: '0.1.0', timestampUnixMs: Date.now(), nonce: new Uint8Array(16), tags: { a: 'b' } };
  return {
    org_token: 'tok', public_key: Buffer.from(pair.publicKey), hostname: 'h', machine_fingerprint: 'f', os: 'linux', arch: 'x64', agent_version: '0.1.0',
    timestamp_unix_ms: fields.timestampUnixMs, nonce: Buffer.from(fields.nonce), tags: fields.tags, signature: Buffer.from(nacl.sign.detached(registerPayload(fields), pair.secretKey)),
  };
}

test('the gRPC transport registers over TLS with the configured CA; the signature verifies on the server', async () => {
  const transport = transportTo(ingest('ca'));
  try {
    const result = await transport.register(signedRequest());
    assert.ok(result.ok, JSON.stringify(!result.ok && result.failure));
    assert.equal(result.response.status, 'AGENT_STATUS_ACTIVE');
    assert.equal(result.response.agent_id, 'hst_e2e');
  } finally {
    transport.close();
  }
});

test('the heartbeat stream carries the JWT as Bearer metadata and receives acks', async () => {
  const transport = transportTo(ingest('ca', 'localhost'));
  try {
    const ack = await new Promise<number>((resolve, reject) => {
      const call = transport.openHeartbeat('h.p.s', {
        onMessage: (message) => {
          if (message.ack) {
            resolve(message.ack.sequence);
            call.close();
          }
        },
        onEnd: (status) => (status.grpcCode === GrpcCode.CANCELLED ? undefined : reject(new Error(status.details))),
      });
      call.send({ agent_id: 'hst_e2e', sequence: 7, interval_secs: 30 });
    });
    assert.equal(ack, 7);
    assert.equal(received.authorizations.at(-1), 'Bearer h.p.s');
    assert.equal(received.heartbeats.at(-1)?.agent_id, 'hst_e2e');
  } finally {
    transport.close();
  }
});

test('a server certificate from another CA is reported as a TLS trust failure, not as unreachable', async () => {
  const transport = transportTo(ingest('other-ca'));
  try {
    const result = await transport.register(signedRequest());
    assert.ok(!result.ok);
    assert.equal(result.failure.grpcCode, GrpcCode.UNAVAILABLE);
    assert.ok(isTlsTrustFailure(result.failure), result.failure.details);
  } finally {
    transport.close();
  }
});

test('the TLS probe passes for a trusted server and names the CA file when it is not trusted', async () => {
  await probeIngestTls(ingest('ca'));
  await probeIngestTls(ingest('ca', 'localhost'));
  await assert.rejects(probeIngestTls(ingest('other-ca')), (error: { code: string; exitCode: number; message: string }) => {
    assert.equal(error.code, 'ERR_INGEST_TLS_UNTRUSTED');
    assert.equal(error.exitCode, 78);
    assert.ok(error.message.includes(join(dir, 'other-ca.crt')) && error.message.includes(`127.0.0.1:${port}`));
    return true;
  });
});

test('the TLS probe reports a closed port as ERR_INGEST_UNREACHABLE', async () => {
  const closed = { ...ingest('ca'), address: parseIngestAddress('127.0.0.1:1', 'test') };
  await assert.rejects(probeIngestTls(closed), { code: 'ERR_INGEST_UNREACHABLE' });
});

/** The established TCP connections whose local (server) port is `serverPort`, counted by ss. */
function establishedTo(serverPort: number): number {
  return execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${serverPort} )`], { encoding: 'utf8' }).split('\n').filter((line) => line.trim() !== '').length;
}

async function waitFor(condition: () => boolean, timeoutMs: number): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end; await delay(200)) if (condition()) return true;
  return condition();
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('after failed calls and the appliance\'s return the transport holds one connection, used by the next call after the agent\'s shortest wait, and none once closed', { timeout: 60_000 }, async () => {
  // A free port, closed again: the "appliance" is down.
  const probe = new grpc.Server();
  const lateCredentials = grpc.ServerCredentials.createSsl(null, [{ private_key: readFileSync(join(dir, 'server.key')), cert_chain: readFileSync(join(dir, 'server.crt')) }]);
  const latePort = await new Promise<number>((resolve, reject) => probe.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error ? reject(error) : resolve(bound))));
  probe.forceShutdown();
  const transport = transportTo({ ...ingest('ca'), address: parseIngestAddress(`127.0.0.1:${latePort}`, 'test') });
  const late = new grpc.Server();
  try {
    for (let failure = 0; failure < 5; failure += 1) {
      const result = await transport.register(signedRequest());
      assert.ok(!result.ok && result.failure.grpcCode === GrpcCode.UNAVAILABLE);
      await delay(RETRY_FLOOR_MS + 50);
    }
    late.addService(loadIngestProto().ctops.ingest.v1.IngestService.service, {
      Register: (_call: unknown, callback: grpc.sendUnaryData<RegisterResponse>) => callback(null, registerAnswer),
    });
    await new Promise<number>((resolve, reject) => late.bindAsync(`127.0.0.1:${latePort}`, lateCredentials, (error, bound) => (error ? reject(error) : resolve(bound))));
    // The agent's shortest wait after the appliance is back: grpc-js's own backoff must not fail this call.
    await delay(RETRY_FLOOR_MS);
    const back = await transport.register(signedRequest());
    assert.ok(back.ok, JSON.stringify(!back.ok && back.failure));
    await delay(3_000);
    assert.equal(establishedTo(latePort), 1, 'one connection: the transport\'s own, no leftover of the failed attempts');
    transport.close();
    assert.ok(await waitFor(() => establishedTo(latePort) === 0, 10_000), `${establishedTo(latePort)} connections left after close`);
  } finally {
    transport.close();
    late.forceShutdown();
  }
});

// ---------------------------------------------------------------- the CLI as a process

interface ProcessResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runAgent(args: string[], env: Record<string, string> = {}, untilStdout?: RegExp): Promise<ProcessResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(repo, 'agent/main.ts'), ...args], { cwd: repo, env: { ...process.env, CT_OPS_MACHINE_ID_FILE: join(dir, 'machine-id'), ...env } });
    let stdout = '';
    let stderr = '';
    let signalled = false;
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (untilStdout?.test(stdout) && !signalled) {
        signalled = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (chunk) => (stderr += chunk));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function writeAgentConfig(name: string, body: string): string {
  const file = join(dir, `${name}.toml`);
  writeFileSync(file, body);
  return file;
}

const configFor = (name: string, ca: string) =>
  writeAgentConfig(name, `[ingest]\naddress = "localhost:${port}"\nca_cert_file = "${join(dir, ca)}"\n[agent]\norg_token = "tok_cli"\ndata_dir = "${join(dir, `${name}-data`)}"\nheartbeat_interval_secs = 5\n`);

test('-check exits 0 for a valid config and a trusted, reachable appliance', async () => {
  const result = await runAgent(['-check', '-config', configFor('check-ok', 'ca.crt')]);
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /reachable and trusted/);
  assert.equal(result.stderr, '');
});

test('-check exits 78 with one clear stderr line when the CA does not trust the appliance', async () => {
  const result = await runAgent(['-check', '--config', configFor('check-untrusted', 'other-ca.crt')]);
  assert.equal(result.code, 78);
  assert.equal(result.stderr.trim().split('\n').length, 1);
  assert.match(result.stderr, /^ct-ops-agent: ERR_INGEST_TLS_UNTRUSTED: .*other-ca\.crt/);
});

test('a config error exits 78 with a single stderr line naming file and key', async () => {
  const file = writeAgentConfig('bad-interval', '[ingest]\naddress = "localhost:1"\n[agent]\nheartbeat_interval_secs = 0\n');
  const result = await runAgent(['-config', file]);
  assert.equal(result.code, 78);
  assert.equal(result.stderr, `ct-ops-agent: ERR_CONFIG_INVALID: ${file}: [agent] heartbeat_interval_secs: expected an integer from 5 to 3600, got 0\n`);
});

test('unknown flags exit 64; --version prints the version', async () => {
  assert.equal((await runAgent(['-nope'])).code, 64);
  const version = await runAgent(['--version']);
  assert.equal(version.code, 0);
  assert.match(version.stdout, /^\d+\.\d+\.\d+/);
});

test('the agent enrols, streams heartbeats and exits 0 on SIGTERM', async () => {
  registerAnswer = { agent_id: 'hst_cli', status: 'AGENT_STATUS_ACTIVE', jwt: 'c.l.i', jwt_expires_unix: Math.floor(Date.now() / 1000) + 86_400 };
  writeFileSync(join(dir, 'machine-id'), 'cli-machine\n');
  const before = received.heartbeats.length;
  const result = await runAgent(['-config', configFor('run', 'ca.crt')], {}, /"msg":"heartbeat stream opened"/);
  assert.equal(result.code, 0, result.stderr);
  const messages = result.stdout.trim().split('\n').map((line) => JSON.parse(line).msg);
  for (const msg of ['agent identity ready', 'registering agent', 'registration response', 'agent registered and active', 'starting heartbeat', 'heartbeat stream opened', 'agent stopping', 'agent stopped']) {
    assert.ok(messages.includes(msg), `missing "${msg}" in ${messages.join(' | ')}`);
  }
  assert.equal(received.registers.at(-1)?.org_token, 'tok_cli');
  assert.equal(received.heartbeats.at(-1)?.agent_id, 'hst_cli');
  assert.ok(received.heartbeats.length > before);
  assert.ok(!result.stdout.includes('tok_cli') && !result.stdout.includes('c.l.i'));
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'run-data', 'agent_state.json'), 'utf8')).agent_id, 'hst_cli');
});

test('a revoked host exits 77 so the service manager does not restart it', async () => {
  registerAnswer = { agent_id: 'hst_rev', status: 'AGENT_STATUS_REVOKED', message: 'revoked by admin' };
  const result = await runAgent(['-config', configFor('revoked', 'ca.crt')]);
  assert.equal(result.code, 77);
  assert.match(result.stderr, /^ct-ops-agent: ERR_AGENT_REVOKED: /);
});
