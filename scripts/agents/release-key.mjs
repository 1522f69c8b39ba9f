// The Ed25519 release key that signs SHA256SUMS. Production builds name its PKCS#8
// PEM in CT_OPS_RELEASE_KEY; without it a development key is created once in the
// ignored .dev-keys/ folder (release.key 0600, release.pub in minisign format) and
// reused, so local builds verify but can never pass for a release.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { privateKeyToPem, seedFromPem } from '../../common/ed25519-pem.ts';
import { keyIdHex, publicKeyFile, signingKeyFromSeed } from '../../common/minisign.ts';
import { BuildAgentsError } from './errors.mjs';

function readKey(path, what) {
  let pem;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (error) {
    throw new BuildAgentsError('ERR_RELEASE_KEY_INVALID', `${what} ${path} cannot be read: ${error.message}`, { cause: error });
  }
  const seed = seedFromPem(pem);
  if (!seed) throw new BuildAgentsError('ERR_RELEASE_KEY_INVALID', `${what} ${path} is not a PKCS#8 Ed25519 private key`);
  return signingKeyFromSeed(seed);
}

/**
 * The signing key and where it came from: { key, source: 'env' | 'dev-existing' |
 * 'dev-created', path }.
 */
export function loadReleaseKey({ envPath, devKeysDir }) {
  if (envPath) return { key: readKey(envPath, 'CT_OPS_RELEASE_KEY'), source: 'env', path: envPath };
  const keyPath = join(devKeysDir, 'release.key');
  if (existsSync(keyPath)) return { key: readKey(keyPath, 'development release key'), source: 'dev-existing', path: keyPath };

  mkdirSync(devKeysDir, { recursive: true, mode: 0o700 });
  const seed = new Uint8Array(randomBytes(32));
  const key = signingKeyFromSeed(seed);
  writeFileSync(keyPath, privateKeyToPem(seed), { mode: 0o600, flag: 'wx' });
  chmodSync(keyPath, 0o600);
  writeFileSync(join(devKeysDir, 'release.pub'), publicKeyFile(key, `CT-Ops DEVELOPMENT release key ${keyIdHex(key.keyId)}`));
  return { key, source: 'dev-created', path: keyPath };
}
