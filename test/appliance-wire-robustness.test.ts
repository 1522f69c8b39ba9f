import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { MAX_HEARTBEAT_REQUEST_BYTES } from '../common/heartbeat-limits.ts';
import { MAX_REQUEST_BYTES } from '../appliance/grpc/malformed-requests.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { rawGrpcCall } from './helpers/raw-grpc.ts';

describe('the ingest port survives hostile input', () => {
  const ingest = useIngestFixture();

  async function stillServes(): Promise<void> {
    const { token } = await ingest.appliance.createToken('--auto-approve');
    const result = await callRegister(ingest.client, signedRegister(newIdentity(), token));
    assert.ok(result.ok, 'a well-formed Register still succeeds');
    assert.ok(ingest.appliance.process.running, 'the appliance process is alive');
  }

  test('a 5 MiB Register is refused with RESOURCE_EXHAUSTED', async () => {
    const { token } = await ingest.appliance.createToken();
    const result = await callRegister(ingest.client, signedRegister(newIdentity(), token, { hostname: 'x'.repeat(5 * 1024 * 1024) }));
    assert.equal(!result.ok && result.code, GrpcCode.RESOURCE_EXHAUSTED);
    await stillServes();
  });

  test('protobuf garbage in a valid gRPC frame is refused without a crash', async () => {
    for (let attempt = 0; attempt < 20; attempt += 1) {
      const { status } = await rawGrpcCall(ingest.appliance.grpcPort, ingest.appliance.caCert, attempt % 2 ? 'Register' : 'Heartbeat', [randomBytes(1 + attempt * 37)]);
      assert.ok(status !== undefined && status !== String(GrpcCode.OK), `garbage answered with grpc-status ${status}`);
    }
    await stillServes();
  });

  test('a Register or Heartbeat message over its method\'s bound is refused with RESOURCE_EXHAUSTED (ERR_MESSAGE_TOO_LARGE) before it is decoded; an inventory chunk keeps the 4 MiB bound', async () => {
    const { jwt } = await ingest.enrol({ hostname: 'too-large' });
    const registerBound = MAX_REQUEST_BYTES.Register!;
    const call = (method: string, bytes: number, headers: Record<string, string> = {}) =>
      rawGrpcCall(ingest.appliance.grpcPort, ingest.appliance.caCert, method, [Buffer.alloc(bytes, 0xff)], headers);
    const bearer = { authorization: `Bearer ${jwt}` };
    // 0xff bytes are not protobuf: a refusal for size, not INVALID_ARGUMENT, shows the size is judged before decoding.
    for (const [method, bytes, headers] of [
      ['Register', registerBound + 1, {}],
      ['Register', 1024 * 1024, {}],
      ['Heartbeat', MAX_HEARTBEAT_REQUEST_BYTES + 1, bearer],
      ['Heartbeat', 3 * 1024 * 1024, bearer],
    ] as const) {
      const { status, message } = await call(method, bytes, headers);
      assert.equal(status, String(GrpcCode.RESOURCE_EXHAUSTED), `${method} of ${bytes} bytes: ${message}`);
      assert.equal(codeFromGrpcDetails(message), 'ERR_MESSAGE_TOO_LARGE', `${method} of ${bytes} bytes: ${message}`);
    }
    for (const [method, bytes, headers] of [
      ['Register', registerBound, {}],
      ['Heartbeat', MAX_HEARTBEAT_REQUEST_BYTES, bearer],
      ['SubmitSoftwareInventory', 2 * 1024 * 1024, bearer],
    ] as const) {
      const { status, message } = await call(method, bytes, headers);
      assert.equal(codeFromGrpcDetails(message), 'ERR_INVALID_ARGUMENT', `${method} of ${bytes} bytes is within its bound and decoded: ${message}`);
      assert.equal(status, String(GrpcCode.INVALID_ARGUMENT));
    }
    await stillServes();
  });

  test('a well-formed Register with every field missing is refused as INVALID_ARGUMENT', async () => {
    const { status, message } = await rawGrpcCall(ingest.appliance.grpcPort, ingest.appliance.caCert, 'Register', [Buffer.alloc(0)]);
    assert.equal(status, String(GrpcCode.INVALID_ARGUMENT));
    assert.equal(codeFromGrpcDetails(message), 'ERR_INVALID_ARGUMENT');
  });

  test('plain-text and random bytes on the TLS port are dropped', async () => {
    await new Promise<void>((resolve) => {
      const socket = netConnect(ingest.appliance.grpcPort, '127.0.0.1', () => socket.end('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + randomBytes(4096).toString('binary')));
      socket.on('data', () => undefined);
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
    await new Promise<void>((resolve) => {
      const socket = tlsConnect({ port: ingest.appliance.grpcPort, host: '127.0.0.1', ca: ingest.appliance.caCert, servername: 'localhost', ALPNProtocols: ['h2'] }, () => socket.end(randomBytes(8192)));
      socket.on('data', () => undefined);
      socket.on('close', () => resolve());
      socket.on('error', () => resolve());
    });
    await stillServes();
  });
});
