import nacl from 'tweetnacl';
import { registerPayload, toRegisterRequest, type RegisterFreshness, type RegisterPayloadFields } from '../../common/register-payload.ts';
import type { RegisterRequest } from '../../common/proto.ts';
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
 * A signed RegisterRequest. Every call needs fresh `freshness`: a challenge the appliance just
 * issued (used once), or, for an appliance without challenges, a timestamp and a new nonce.
 */
export function buildRegisterRequest(host: HostDescription, keys: AgentKeys, orgToken: string, freshness: RegisterFreshness): RegisterRequest {
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
  return toRegisterRequest(fields, nacl.sign.detached(registerPayload(fields), keys.secretKey));
}

/** The operating system names the appliance expects. */
export function osName(platform: NodeJS.Platform): string {
  return platform === 'win32' ? 'windows' : platform;
}
