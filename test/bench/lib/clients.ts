import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadIngestProto, type IngestServiceClient, type RegisterRequest } from '../../../common/proto.ts';
import { registerPayload, toRegisterRequest } from '../../../common/register-payload.ts';

/** Makes one grpc-js client per simulated agent, all trusting the appliance CA. */
export function clientFactory(address: string, caPem: string): (agentIndex: number) => IngestServiceClient {
  const Service = loadIngestProto().ctops.ingest.v1.IngestService;
  const credentials = grpc.credentials.createSsl(Buffer.from(caPem));
  // grpc-js shares a subchannel (one TCP/TLS connection) between channels with equal
  // options; a private pool gives each agent its own connection, as real agents have.
  return (agentIndex) => new Service(address, credentials, { 'grpc.use_local_subchannel_pool': 1, 'grpc.ctops_bench_agent': agentIndex });
}

/** Connects (TCP + TLS + HTTP/2) before anything is timed. */
export function connect(client: IngestServiceClient, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * Signed Register requests for `count` distinct agents: distinct keys and machine
 * fingerprints, so none is held pending as a clone. Signed up front with node:crypto
 * so the timed phase measures the appliance, not the signer.
 */
export function signedRegisterRequests(count: number, orgToken: string): RegisterRequest[] {
  return Array.from({ length: count }, (_, index) => {
    const { publicKey, privateKey } = generateKeyPairSync('ed25519');
    const fields = {
      publicKey: Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url'),
      orgToken,
      hostname: `bench-${String(index).padStart(4, '0')}`,
      machineFingerprint: createHash('sha256').update(randomBytes(16)).digest('hex'),
      os: 'linux',
      arch: 'x64',
      agentVersion: '0.1.0-bench',
      timestampUnixMs: Date.now(),
      nonce: randomBytes(16),
      tags: {},
    };
    return toRegisterRequest(fields, sign(null, registerPayload(fields), privateKey));
  });
}
