import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import nacl from 'tweetnacl';
import { privateKeyToPem, publicKeyFromPem, publicKeyToPem, seedFromPem } from '../../common/ed25519-pem.ts';
import { CtOpsError } from '../../common/errors.ts';
import type { AgentLogger } from '../log/logger.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import type { IdentityPaths } from './paths.ts';

export interface AgentKeys {
  /** Raw 32-byte Ed25519 public key, as sent in RegisterRequest.public_key. */
  readonly publicKey: Uint8Array;
  /** tweetnacl's 64-byte secret key (seed || public key), used to sign. */
  readonly secretKey: Uint8Array;
}

export interface LoadedKeys {
  readonly keys: AgentKeys;
  /** True when this call generated the key pair: the host will enrol as a new host. */
  readonly created: boolean;
}

/**
 * Loads the Ed25519 key pair from data_dir, generating it only when agent_key.pem does
 * not exist. A damaged agent_key.pem is fatal: silently replacing an existing identity
 * would enrol this machine a second time as a duplicate host.
 */
export function loadOrCreateKeys(paths: IdentityPaths, log: AgentLogger): LoadedKeys {
  if (!existsSync(paths.privateKey)) {
    const pair = nacl.sign.keyPair.fromSeed(new Uint8Array(randomBytes(32)));
    writeFileAtomic(paths.privateKey, privateKeyToPem(pair.secretKey.subarray(0, 32)), 0o600);
    writeFileAtomic(paths.publicKey, publicKeyToPem(pair.publicKey), 0o644);
    return { keys: { publicKey: pair.publicKey, secretKey: pair.secretKey }, created: true };
  }
  const seed = seedFromPem(readKeyFile(paths.privateKey));
  if (seed === undefined) {
    throw new CtOpsError(
      'ERR_DATA_DIR_UNUSABLE',
      `${paths.privateKey} is not an Ed25519 private key (PKCS#8 PEM); refusing to create a new identity, which would enrol this machine as a duplicate host. Restore the file, or delete ${paths.dataDir} to enrol as a new host`,
      { path: paths.privateKey },
    );
  }
  warnIfExposed(paths.privateKey, log);
  const pair = nacl.sign.keyPair.fromSeed(seed);
  ensurePublicKeyFile(paths, pair.publicKey, log);
  return { keys: { publicKey: pair.publicKey, secretKey: pair.secretKey }, created: false };
}

function readKeyFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot read ${path}: ${(cause as Error).message}`, { path }, { cause });
  }
}

/** agent_key.pub is derived data: rewrite it from the private key when missing or different. */
function ensurePublicKeyFile(paths: IdentityPaths, publicKey: Uint8Array, log: AgentLogger): void {
  const existing = existsSync(paths.publicKey) ? publicKeyFromPem(readFileSync(paths.publicKey, 'utf8')) : undefined;
  if (existing !== undefined && Buffer.from(existing).equals(Buffer.from(publicKey))) return;
  if (existsSync(paths.publicKey)) log.warn({ path: paths.publicKey }, 'public key file did not match the private key; rewritten');
  writeFileAtomic(paths.publicKey, publicKeyToPem(publicKey), 0o644);
}

function warnIfExposed(path: string, log: AgentLogger): void {
  if (process.platform === 'win32') return;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) log.warn({ path, mode: mode.toString(8) }, 'private key file is readable by other users; expected mode 0600');
}
