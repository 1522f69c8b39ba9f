import nacl from 'tweetnacl';
import { registerPayload, toRegisterRequest, type RegisterFreshness, type RegisterPayloadFields } from '../../common/register-payload.ts';
import type { RegisterRequest } from '../../common/proto.ts';
import { keyRotationProofPayload, successorProofPayload } from '../../common/successor-proof.ts';
import type { AgentKeys } from '../identity/keys.ts';

/** What describes this host in a Register request; the same for every attempt. */
export interface HostDescription {
  readonly hostname: string;
  readonly machineFingerprint: string;
  readonly os: string;
  readonly arch: string;
  readonly agentVersion: string;
  readonly tags: Readonly<Record<string, string>>;
  /** The install bundle this agent came from (agent.toml [agent] install_bundle_id); absent when it names none. */
  readonly installBundleId?: string;
}

/**
 * A signed RegisterRequest. Every call needs fresh `freshness`: a challenge the appliance just
 * issued (used once), or, for an appliance without challenges, a timestamp and a new nonce.
 */
export function buildRegisterRequest(host: HostDescription, keys: AgentKeys, orgToken: string, freshness: RegisterFreshness, predecessor?: AgentKeys, rotationNonce?: Uint8Array): RegisterRequest {
  const fields: RegisterPayloadFields = {
    publicKey: keys.publicKey,
    orgToken,
    hostname: host.hostname,
    machineFingerprint: host.machineFingerprint,
    os: host.os,
    arch: host.arch,
    agentVersion: host.agentVersion,
    tags: host.tags,
    ...freshness,
  };
  const signed = toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), keys.secretKey));
  // Outside the signed payload: the bundle is provenance the appliance records, not something the key vouches for.
  const request = host.installBundleId === undefined ? signed : { ...signed, install_bundle_id: host.installBundleId };
  if (predecessor === undefined) return request;
  // A retired identity vouches for its successor instead of an enrolment token; the current key
  // vouches for the key that replaces it in a rotation, bound to the appliance's nonce.
  const payload = rotationNonce === undefined ? successorProofPayload(keys.publicKey) : keyRotationProofPayload(keys.publicKey, rotationNonce);
  const proof = nacl.sign.detached(payload, predecessor.secretKey);
  const rotation = rotationNonce === undefined ? {} : { rotation_nonce: Buffer.from(rotationNonce) };
  return { ...request, predecessor_public_key: Buffer.from(predecessor.publicKey), predecessor_signature: Buffer.from(proof), ...rotation };
}

/** The operating system names the appliance expects. */
export function osName(platform: NodeJS.Platform): string {
  return platform === 'win32' ? 'windows' : platform;
}
