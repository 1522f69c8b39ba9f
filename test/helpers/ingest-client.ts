import { createHash, randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import nacl from 'tweetnacl';
import { loadIngestProto, type HeartbeatRequest, type HeartbeatResponse__Output, type IngestServiceClient, type RegisterChallenge__Output, type RegisterRequest, type RegisterRequest__Output, type RegisterResponse__Output } from '../../common/proto.ts';
import { registerPayload, toRegisterRequest } from '../../common/register-payload.ts';
import { parseRetryAfterMs, RETRY_AFTER_MS_METADATA } from '../../common/retry-hint.ts';

/**
 * A gRPC client of the ingest service, trusting the appliance CA: the protocol seen from outside.
 * `serverName`: the name the server certificate must carry, when it is not the address's host.
 */
export function ingestClient(address: string, caPem: string, serverName?: string): IngestServiceClient {
  const proto = loadIngestProto();
  const options = serverName === undefined ? {} : { 'grpc.ssl_target_name_override': serverName, 'grpc.default_authority': serverName };
  return new proto.ctops.ingest.v1.IngestService(address, grpc.credentials.createSsl(Buffer.from(caPem)), options);
}

export interface TestIdentity {
  keyPair: nacl.SignKeyPair;
  fingerprint: string;
  hostname: string;
}

export function newIdentity(hostname = `host-${randomBytes(3).toString('hex')}`, machineId = randomBytes(16).toString('hex')): TestIdentity {
  return { keyPair: nacl.sign.keyPair(), fingerprint: createHash('sha256').update(machineId).digest('hex'), hostname };
}

/** A correctly signed legacy (register/v1: timestamp and nonce) RegisterRequest, every field set as grpc-js decodes it; `overrides` change fields after signing (to test tampering). */
export function signedRegister(identity: TestIdentity, orgToken: string, overrides: Partial<RegisterRequest> = {}, timestampUnixMs = Date.now()): RegisterRequest {
  const fields = {
    publicKey: identity.keyPair.publicKey,
    orgToken,
    hostname: identity.hostname,
    machineFingerprint: identity.fingerprint,
    os: 'linux',
    arch: 'x64',
    agentVersion: '0.1.0-test',
    timestampUnixMs,
    nonce: randomBytes(16),
    tags: {},
  };
  return { register_challenge: Buffer.alloc(0), ...toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), identity.keyPair.secretKey)), ...overrides };
}

/** The decoded form grpc-js hands the Register handler for `request`: every field present. */
export function decodedRegister(request: RegisterRequest): RegisterRequest__Output {
  const bytes = (value: RegisterRequest['nonce']): Buffer => Buffer.from((value as Uint8Array | undefined) ?? []);
  return {
    org_token: request.org_token ?? '',
    public_key: bytes(request.public_key),
    hostname: request.hostname ?? '',
    machine_fingerprint: request.machine_fingerprint ?? '',
    os: request.os ?? '',
    arch: request.arch ?? '',
    agent_version: request.agent_version ?? '',
    timestamp_unix_ms: Number(request.timestamp_unix_ms ?? 0),
    nonce: bytes(request.nonce),
    register_challenge: bytes(request.register_challenge),
    signature: bytes(request.signature),
    tags: request.tags ?? {},
    predecessor_public_key: bytes(request.predecessor_public_key),
    predecessor_signature: bytes(request.predecessor_signature),
    rotation_nonce: bytes(request.rotation_nonce),
    install_bundle_id: request.install_bundle_id ?? '',
  };
}

/** A RegisterRequest signed over `challenge` (register/v2), as current agents send it. */
export function challengedRegister(identity: TestIdentity, orgToken: string, challenge: Uint8Array, overrides: Partial<RegisterRequest> = {}): RegisterRequest {
  const fields = { publicKey: identity.keyPair.publicKey, orgToken, hostname: identity.hostname, machineFingerprint: identity.fingerprint, os: 'linux', arch: 'x64', agentVersion: '0.1.0-test', tags: {}, challenge };
  return { ...toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), identity.keyPair.secretKey)), ...overrides };
}

export function callGetRegisterChallenge(client: IngestServiceClient): Promise<CallResult<RegisterChallenge__Output>> {
  return new Promise((resolve) => {
    client.GetRegisterChallenge({}, { deadline: Date.now() + 10_000 }, (error, response) => {
      if (error) resolve({ ok: false, code: error.code, details: error.details });
      else resolve({ ok: true, value: response as RegisterChallenge__Output });
    });
  });
}

export type CallResult<T> = { ok: true; value: T } | { ok: false; code: number; details: string };

export function callRegister(client: IngestServiceClient, request: RegisterRequest): Promise<CallResult<RegisterResponse__Output>> {
  return new Promise((resolve) => {
    client.Register(request, { deadline: Date.now() + 10_000 }, (error, response) => {
      if (error) resolve({ ok: false, code: error.code, details: error.details });
      else resolve({ ok: true, value: response as RegisterResponse__Output });
    });
  });
}

/** An open Heartbeat stream with everything the server sent and how it ended. */
export class HeartbeatStream {
  readonly received: HeartbeatResponse__Output[] = [];
  /** The status that ended the stream, with its retry-after-ms hint when it carried one. */
  readonly ended: Promise<{ code: number; details: string; retryAfterMs: number | undefined }>;
  readonly call: grpc.ClientDuplexStream<HeartbeatRequest, HeartbeatResponse__Output>;

  constructor(client: IngestServiceClient, jwt: string, extraMetadata: Record<string, string> = {}) {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${jwt}`);
    for (const [key, value] of Object.entries(extraMetadata)) metadata.set(key, value);
    this.call = client.Heartbeat(metadata);
    this.call.on('data', (message: HeartbeatResponse__Output) => this.received.push(message));
    this.ended = new Promise((resolve) => {
      this.call.on('status', (status: grpc.StatusObject) =>
        resolve({ code: status.code, details: status.details, retryAfterMs: parseRetryAfterMs(status.metadata.get(RETRY_AFTER_MS_METADATA)) }),
      );
      this.call.on('error', () => undefined);
    });
  }

  send(agentId: string, sequence: number, extra: Partial<HeartbeatRequest> = {}): void {
    this.call.write({
      agent_id: agentId,
      cpu_percent: 12.5,
      memory_percent: 40,
      disk_percent: 55,
      uptime_seconds: 1000,
      timestamp_unix: Math.floor(Date.now() / 1000),
      sequence,
      interval_secs: 5,
      agent_version: '0.1.0-test',
      ...extra,
    });
  }

  acks(): number[] {
    return this.received.filter((message) => message.kind === 'ack').map((message) => Number(message.ack!.sequence));
  }
}
