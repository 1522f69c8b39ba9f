import nacl from 'tweetnacl';
import { registerPayload, toRegisterRequest, type RegisterPayloadFields } from '../../common/register-payload.ts';
import type { RegisterRequest } from '../../common/proto.ts';
import { successorProofPayload } from '../../common/successor-proof.ts';
import type { AgentKeys } from '../identity/keys.ts';

/** What describes this host in a Register request; the same for every attempt. */
export interface HostDescription {
  readonly hostname: string;
  readonly machineFingerprint: string;
  readonly os: string;
  readonly arch: string;
  readonly agentVersion: string;
  readonly tags: Readonly<Record<string, string>>;
}

/**
 * A signed RegisterRequest. Every call needs a fresh timestamp and nonce: the
 * appliance rejects stale timestamps and replayed nonces.
 */
export function buildRegisterRequest(host: HostDescription, keys: AgentKeys, orgToken: string, timestampUnixMs: number, nonce: Uint8Array, predecessor?: AgentKeys): RegisterRequest {
  const fields: RegisterPayloadFields = {
    publicKey: keys.publicKey,
    orgToken,
    hostname: host.hostname,
    machineFingerprint: host.machineFingerprint,
    os: host.os,
    arch: host.arch,
    agentVersion: host.agentVersion,
    timestampUnixMs,
    nonce,
    tags: host.tags,
  };
  const request = toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), keys.secretKey));
  if (predecessor === undefined) return request;
  // A retired identity vouches for its successor instead of an enrolment token.
  const proof = nacl.sign.detached(successorProofPayload(keys.publicKey), predecessor.secretKey);
  return { ...request, predecessor_public_key: Buffer.from(predecessor.publicKey), predecessor_signature: Buffer.from(proof) };
}

/** The operating system names the appliance expects. */
export function osName(platform: NodeJS.Platform): string {
  return platform === 'win32' ? 'windows' : platform;
}
