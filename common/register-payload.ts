import type { RegisterRequest } from './proto.ts';

/**
 * The canonical bytes an agent signs in a Register request, proving it holds the
 * private key of the public key it registers.
 *
 * Format: the UTF-8 bytes of a JSON array (no whitespace) of strings, in this order:
 *   ["ct-ops/register/v1", public_key_base64, org_token, hostname,
 *    machine_fingerprint, os, arch, agent_version, timestamp_unix_ms (decimal),
 *    nonce_base64, tags as a JSON object with sorted keys]
 * A JSON array makes the encoding unambiguous (no delimiter can be smuggled into a
 * field) and easy to reproduce in any language (test/python/register.py does).
 */
export const REGISTER_PAYLOAD_DOMAIN = 'ct-ops/register/v1';

export interface RegisterPayloadFields {
  publicKey: Uint8Array;
  orgToken: string;
  hostname: string;
  machineFingerprint: string;
  os: string;
  arch: string;
  agentVersion: string;
  timestampUnixMs: number;
  nonce: Uint8Array;
  tags: Readonly<Record<string, string>>;
}

export function registerPayload(fields: RegisterPayloadFields): Uint8Array {
  const sortedTags = Object.fromEntries(Object.entries(fields.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const text = JSON.stringify([
    REGISTER_PAYLOAD_DOMAIN,
    Buffer.from(fields.publicKey).toString('base64'),
    fields.orgToken,
    fields.hostname,
    fields.machineFingerprint,
    fields.os,
    fields.arch,
    fields.agentVersion,
    String(fields.timestampUnixMs),
    Buffer.from(fields.nonce).toString('base64'),
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
    timestamp_unix_ms: fields.timestampUnixMs,
    nonce: Buffer.from(fields.nonce),
    tags: { ...fields.tags },
    signature: Buffer.from(signature),
  };
}
