import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as http2Connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';

/** Sends one gRPC request frame with an arbitrary body over HTTP/2 and returns the grpc-status. */
function rawGrpcCall(port: number, ca: string, method: string, body: Buffer): Promise<{ status: string | undefined; message: string | undefined }> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`https://localhost:${port}`, { ca });
    session.on('error', reject);
    const frame = Buffer.alloc(5 + body.length);
    frame.writeUInt8(0, 0);
    frame.writeUInt32BE(body.length, 1);
    body.copy(frame, 5);
    const stream = session.request({ ':method': 'POST', ':path': `/ctops.ingest.v1.IngestService/${method}`, 'content-type': 'application/grpc', te: 'trailers' });
    let status: string | undefined;
    let message: string | undefined;
    const take = (headers: Record<string, unknown>): void => {
      status ??= headers['grpc-status'] as string | undefined;
      message ??= headers['grpc-message'] as string | undefined;
    };
    stream.on('response', take);
    stream.on('trailers', take);
    stream.on('data', () => undefined);
    stream.on('close', () => {
      session.close();
      resolve({ status, message: message && decodeURIComponent(message) });
    });
    stream.on('error', reject);
    stream.end(frame);
  });
}

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
      const { status } = await rawGrpcCall(ingest.appliance.grpcPort, ingest.appliance.caCert, attempt % 2 ? 'Register' : 'Heartbeat', randomBytes(1 + attempt * 37));
      assert.ok(status !== undefined && status !== String(GrpcCode.OK), `garbage answered with grpc-status ${status}`);
    }
    await stillServes();
  });

  test('a well-formed Register with every field missing is refused as INVALID_ARGUMENT', async () => {
    const { status, message } = await rawGrpcCall(ingest.appliance.grpcPort, ingest.appliance.caCert, 'Register', Buffer.alloc(0));
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
