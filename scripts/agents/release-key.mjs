// The Ed25519 release key that signs SHA256SUMS. Production builds name its PKCS#8
// PEM in CT_OPS_RELEASE_KEY; without it a development key is created once in the
// ignored .dev-keys/ folder (release.key 0600, release.pub in minisign format) and
// reused, so local builds verify but can never pass for a release.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
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
 * 'dev-created', path }. A development key is made in a private folder and renamed into
 * place as devKeysDir whole (release.key with release.pub): builds running at once (the
 * test lanes, two releases built in parallel) all end up with the one key that was
 * published first, and no reader ever sees a key without its public half.
 */
export function loadReleaseKey({ envPath, devKeysDir }) {
  if (envPath) return { key: readKey(envPath, 'CT_OPS_RELEASE_KEY'), source: 'env', path: envPath };
  const keyPath = join(devKeysDir, 'release.key');
  if (existsSync(keyPath)) return { key: readKey(keyPath, 'development release key'), source: 'dev-existing', path: keyPath };

  const parent = dirname(devKeysDir);
  mkdirSync(parent, { recursive: true });
  const staging = mkdtempSync(join(parent, '.dev-keys-'));
  const seed = new Uint8Array(randomBytes(32));
  const key = signingKeyFromSeed(seed);
  try {
    writeFileSync(join(staging, 'release.key'), privateKeyToPem(seed), { mode: 0o600 });
    writeFileSync(join(staging, 'release.pub'), publicKeyFile(key, `CT-Ops DEVELOPMENT release key ${keyIdHex(key.keyId)}`));
    chmodSync(staging, 0o700);
    // rename(2) replaces an empty folder and refuses one with files: another build's key wins.
    renameSync(staging, devKeysDir);
    return { key, source: 'dev-created', path: keyPath };
  } catch (error) {
    rmSync(staging, { recursive: true, force: true });
    if ((error.code === 'ENOTEMPTY' || error.code === 'EEXIST') && existsSync(keyPath)) return { key: readKey(keyPath, 'development release key'), source: 'dev-existing', path: keyPath };
    throw new BuildAgentsError('ERR_RELEASE_KEY_INVALID', `cannot create the development release key in ${devKeysDir}: ${error.message}${error.code === 'ENOTEMPTY' ? ' (the folder holds other files but no release.key)' : ''}`, { cause: error });
  }
}
