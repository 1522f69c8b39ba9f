import { checkAgentText, PRINTABLE_TEXT as PRINTABLE } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import type { RegisterRequest__Output } from '../../common/proto.ts';
import type { RegisterHostFields } from '../../common/register-payload.ts';
import { ROTATION_NONCE_BYTES } from './key-rotation.ts';
import { REGISTER_CHALLENGE_BYTES } from './register-challenge.ts';

/**
 * A Register request that passed validation: every field present, typed and bounded, in one of
 * the two forms of common/register-payload.ts (the challenge, or the legacy timestamp and nonce).
 * `predecessor` is a retired claimant's proof for this new key (RegisterRequest.predecessor_*), when sent;
 * with `rotationNonce` (RegisterRequest.rotation_nonce) it is instead the current key's rotation proof.
 * `installBundleId` is the bundle the agent claims to come from (RegisterRequest.install_bundle_id,
 * unsigned): a bundle id, or undefined when it sent none.
 */
export type RegisterInput = RegisterHostFields & {
  publicKey: Buffer;
  signature: Buffer;
  predecessor: { publicKey: Buffer; signature: Buffer } | undefined;
  rotationNonce: Buffer | undefined;
  installBundleId: string | undefined;
} & ({ challenge: Buffer } | { timestampUnixMs: number; nonce: Buffer });

const MAX_TAGS = 32;

const BUNDLE_ID = idPattern('bnd');

function invalid(field: string, problem: string): CtOpsError {
  return new CtOpsError('ERR_INVALID_ARGUMENT', `RegisterRequest.${field} ${problem}`, { field });
}

function boundedText(value: string, field: string, max: number, pattern?: RegExp): string {
  return checkAgentText(value, `RegisterRequest.${field}`, { max, required: true, pattern }, { field });
}

function exactBytes(value: Buffer, field: string, length: number): Buffer {
  if (value.length !== length) throw invalid(field, `must be ${length} bytes, got ${value.length}`);
  return value;
}

export function parseRegisterRequest(message: RegisterRequest__Output): RegisterInput {
  checkAgentText(message.org_token, 'RegisterRequest.org_token', { max: 256 }, { field: 'org_token' });
  const entries = Object.entries(message.tags);
  if (entries.length > MAX_TAGS) throw invalid('tags', `has more than ${MAX_TAGS} entries`);
  for (const [key, value] of entries) {
    boundedText(key, 'tags', 64, PRINTABLE);
    checkAgentText(value, 'RegisterRequest.tags', { max: 256 }, { field: 'tags' });
  }
  return {
    orgToken: message.org_token,
    publicKey: exactBytes(message.public_key, 'public_key', 32),
    hostname: boundedText(message.hostname, 'hostname', 253, PRINTABLE),
    machineFingerprint: boundedText(message.machine_fingerprint, 'machine_fingerprint', 64, /^[0-9a-f]{64}$/),
    os: boundedText(message.os, 'os', 32, /^[a-z0-9_-]+$/),
    arch: boundedText(message.arch, 'arch', 32, /^[a-z0-9_-]+$/),
    agentVersion: boundedText(message.agent_version, 'agent_version', 64, PRINTABLE),
    ...parseFreshness(message),
    signature: exactBytes(message.signature, 'signature', 64),
    tags: Object.fromEntries(entries),
    predecessor:
      message.predecessor_public_key.length === 0 && message.predecessor_signature.length === 0
        ? undefined
        : { publicKey: exactBytes(message.predecessor_public_key, 'predecessor_public_key', 32), signature: exactBytes(message.predecessor_signature, 'predecessor_signature', 64) },
    rotationNonce: parseRotationNonce(message),
    installBundleId: message.install_bundle_id === '' ? undefined : boundedText(message.install_bundle_id, 'install_bundle_id', 64, BUNDLE_ID),
  };
}

/** A rotation's nonce, which only comes with the current key's proof (predecessor_*). */
function parseRotationNonce(message: RegisterRequest__Output): Buffer | undefined {
  if (message.rotation_nonce.length === 0) return undefined;
  if (message.predecessor_public_key.length === 0) throw invalid('rotation_nonce', 'comes without predecessor_public_key and predecessor_signature');
  return exactBytes(message.rotation_nonce, 'rotation_nonce', ROTATION_NONCE_BYTES);
}

/** The challenge form, or the legacy form (timestamp and nonce); never parts of both, so what was signed is unambiguous. */
function parseFreshness(message: RegisterRequest__Output): { challenge: Buffer } | { timestampUnixMs: number; nonce: Buffer } {
  if (message.register_challenge.length > 0) {
    if (message.timestamp_unix_ms !== 0 || message.nonce.length > 0) throw invalid('register_challenge', 'comes with timestamp_unix_ms or nonce; send one form only');
    return { challenge: exactBytes(message.register_challenge, 'register_challenge', REGISTER_CHALLENGE_BYTES) };
  }
  if (!Number.isSafeInteger(message.timestamp_unix_ms) || message.timestamp_unix_ms <= 0) {
    throw invalid('register_challenge', 'is required (or, in the legacy form, timestamp_unix_ms and nonce)');
  }
  return { timestampUnixMs: message.timestamp_unix_ms, nonce: exactBytes(message.nonce, 'nonce', 16) };
}

/** The host a Register request describes: its key, the facts it reported and the bundle it claims, as a new host row takes them. */
export function describedHost(input: RegisterInput) {
  return {
    publicKey: input.publicKey, hostname: input.hostname, machineFingerprint: input.machineFingerprint, os: input.os, arch: input.arch, agentVersion: input.agentVersion,
    ...(input.installBundleId !== undefined && { installBundleId: input.installBundleId }),
  };
}
