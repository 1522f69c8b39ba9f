import type { RegisterRequest } from './proto.ts';

/**
 * The canonical bytes an agent signs in a Register request, proving it holds the
 * private key of the public key it registers. Two forms, told apart by the domain string:
 *
 * register/v2 (the challenge form, current agents): the UTF-8 bytes of a JSON array (no
 * whitespace) of strings, in this order:
 *   ["ct-ops/register/v2", public_key_base64, org_token, hostname,
 *    machine_fingerprint, os, arch, agent_version, register_challenge_base64,
 *    tags as a JSON object with sorted keys]
 * The challenge comes from GetRegisterChallenge; the appliance judges its age by its own clock,
 * so the agent's clock plays no part.
 *
 * register/v1 (the legacy form, agents before the challenge): the same array with
 *   "ct-ops/register/v1" and, in place of the challenge, timestamp_unix_ms (decimal) and
 *   nonce_base64. Still accepted within REGISTER_CLOCK_SKEW_MS of the appliance's clock
 *   (docs/decisions.md).
 *
 * A JSON array makes the encoding unambiguous (no delimiter can be smuggled into a
 * field) and easy to reproduce in any language (test/python/register.py does). The domain
 * strings differ, so a signature over one form never verifies as the other.
 */
export const REGISTER_PAYLOAD_DOMAIN = 'ct-ops/register/v2';
export const LEGACY_REGISTER_PAYLOAD_DOMAIN = 'ct-ops/register/v1';

/** What identifies the host and its request in both forms. */
export interface RegisterHostFields {
  publicKey: Uint8Array;
  orgToken: string;
  hostname: string;
  machineFingerprint: string;
  os: string;
  arch: string;
  agentVersion: string;
  tags: Readonly<Record<string, string>>;
}

/** How the request proves it is fresh: the appliance's challenge, or (legacy) the agent's clock and a nonce. */
export type RegisterFreshness = { challenge: Uint8Array } | { timestampUnixMs: number; nonce: Uint8Array };

export type RegisterPayloadFields = RegisterHostFields & RegisterFreshness;

export function registerPayload(fields: RegisterPayloadFields): Uint8Array {
  const sortedTags = Object.fromEntries(Object.entries(fields.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const freshness = 'challenge' in fields ? [Buffer.from(fields.challenge).toString('base64')] : [String(fields.timestampUnixMs), Buffer.from(fields.nonce).toString('base64')];
  const text = JSON.stringify([
    'challenge' in fields ? REGISTER_PAYLOAD_DOMAIN : LEGACY_REGISTER_PAYLOAD_DOMAIN,
    Buffer.from(fields.publicKey).toString('base64'),
    fields.orgToken,
    fields.hostname,
    fields.machineFingerprint,
    fields.os,
    fields.arch,
    fields.agentVersion,
    ...freshness,
    JSON.stringify(sortedTags),
  ]);
  return new TextEncoder().encode(text);
}

/** The RegisterRequest carrying exactly the signed fields and their signature. */
export function toRegisterRequest(fields: RegisterPayloadFields, signature: Uint8Array): RegisterRequest {
  return {
    org_token: fields.orgToken,
    public_key: Buffer.from(fields.publicKey),
    hostname: fields.hostname,
    machine_fingerprint: fields.machineFingerprint,
    os: fields.os,
    arch: fields.arch,
    agent_version: fields.agentVersion,
    ...('challenge' in fields ? { register_challenge: Buffer.from(fields.challenge) } : { timestamp_unix_ms: fields.timestampUnixMs, nonce: Buffer.from(fields.nonce) }),
    tags: { ...fields.tags },
    signature: Buffer.from(signature),
  };
}
