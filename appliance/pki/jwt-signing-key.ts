import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import { CtOpsError } from '../../common/errors.ts';
import { SECRET_FILE_MODE, readIfExists, writeFileAtomic } from './files.ts';

export interface JwtSigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** RFC 7638 thumbprint of the public key: stable across restarts, changes with the key. */
  kid: string;
  publicJwk: JWK;
}

export const JWT_KEY_FILE = 'jwt-signing.key';

/** Loads the Ed25519 JWT signing key from the data directory, creating it on first start. */
export async function ensureJwtSigningKey(dataDir: string): Promise<JwtSigningKey> {
  const path = join(dataDir, JWT_KEY_FILE);
  let pem = readIfExists(path);
  if (pem === undefined) {
    pem = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    writeFileAtomic(path, pem, SECRET_FILE_MODE);
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${path} is not a PKCS#8 private key`, { path }, { cause });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${path} holds a ${privateKey.asymmetricKeyType} key; an Ed25519 key is required`, { path });
  }
  const publicKey = createPublicKey(privateKey);
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return { privateKey, publicKey, kid, publicJwk: { ...jwk, kid, alg: 'EdDSA', use: 'sig' } };
}
