import { randomBytes } from 'node:crypto';
import { readFileSync, unlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { decodeConfigText } from '../../common/config-file.ts';
import { packageRoot } from '../../common/package-root.ts';
import { privateKeyToPem, seedFromPem } from '../../common/ed25519-pem.ts';
import { CtOpsError } from '../../common/errors.ts';
import { keyIdHex, parsePublicKeyFile, publicKeyFile, signingKeyFromSeed, type PublicKey, type SigningKey } from '../../common/minisign.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, readIfExists, writeFileAtomic } from './files.ts';

export const BUNDLE_KEY_FILE = 'bundle.key';
export const BUNDLE_PUBLIC_KEY_FILE = 'bundle.pub';
export const RELEASE_PUBLIC_KEY_FILE = 'release.pub';
/**
 * Where `npm run build:agents` keeps its development release key when no CT_OPS_RELEASE_KEY is
 * given: .dev-keys/ at the package root (scripts/agents/release-key.mjs), an absolute path,
 * whatever the working directory of the appliance or bundler.
 */
export const DEV_RELEASE_PUBLIC_KEY = join(packageRoot(), '.dev-keys', 'release.pub');
/** The comment scripts/agents/release-key.mjs writes into the development release.pub. */
const DEV_RELEASE_KEY_COMMENT = 'untrusted comment: CT-Ops DEVELOPMENT release key';

/** Loads the appliance's bundle signing key, creating it (and bundle.pub) on first start. */
export function ensureBundleKey(dataDir: string): SigningKey {
  const path = join(dataDir, BUNDLE_KEY_FILE);
  let pem = readIfExists(path);
  if (pem === undefined) {
    pem = privateKeyToPem(randomBytes(32));
    writeFileAtomic(path, pem, SECRET_FILE_MODE);
  }
  const seed = seedFromPem(pem);
  if (!seed) throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${path} is not a PKCS#8 Ed25519 private key`, { path });
  const key = signingKeyFromSeed(seed);
  const publicPath = join(dataDir, BUNDLE_PUBLIC_KEY_FILE);
  const expected = publicKeyFile(key, `CT-Ops appliance bundle key ${keyIdHex(key.keyId)}`);
  if (readIfExists(publicPath) !== expected) writeFileAtomic(publicPath, expected, PUBLIC_FILE_MODE);
  return key;
}

export type ReleaseKeySource = 'configured' | 'data-dir' | 'development' | 'none';

/**
 * The agent release public key this appliance trusts at start (for its start log and text; bundle
 * builds read it again each time). A configured file wins (copied into DATA_DIR/release.pub); then the copy already in the data directory;
 * then, for an appliance started from the repository, the development release key, read in
 * place and never copied: a new one from `npm run build:agents` replaces it at the next bundle
 * build (readReleasePublicKey), with no restart and no stale copy left behind.
 */
export function ensureReleasePublicKey(dataDir: string, configuredFile: string): { key: PublicKey | undefined; source: ReleaseKeySource; removedDevelopmentCopy: boolean } {
  const target = join(dataDir, RELEASE_PUBLIC_KEY_FILE);
  const removedDevelopmentCopy = configuredFile === '' && removeDevelopmentCopy(target);
  const adopt = (path: string, source: ReleaseKeySource): { key: PublicKey; source: ReleaseKeySource; removedDevelopmentCopy: boolean } => {
    const text = readIfExists(path);
    if (text === undefined) throw new CtOpsError('ERR_CONFIG_UNREADABLE', `the release public key ${path} does not exist`, { path });
    let key: PublicKey;
    try {
      key = parsePublicKeyFile(text);
    } catch (cause) {
      // A key file saved as UTF-16 or in a code page gets the error that names its encoding.
      decodeConfigText(readFileSync(path), path);
      throw new CtOpsError('ERR_CONFIG_INVALID', `${path} is not a minisign public key`, { path }, { cause });
    }
    if (source === 'configured' && resolve(path) !== resolve(target) && readIfExists(target) !== text) writeFileAtomic(target, text, PUBLIC_FILE_MODE);
    return { key, source, removedDevelopmentCopy };
  };
  if (configuredFile !== '') return adopt(configuredFile, 'configured');
  const found = readReleasePublicKey(dataDir);
  if (found === undefined) return { key: undefined, source: 'none', removedDevelopmentCopy };
  return adopt(found.path, found.path === DEV_RELEASE_PUBLIC_KEY ? 'development' : 'data-dir');
}

/**
 * Removes DATA_DIR/release.pub when it is a copy of a development key (its comment is the one
 * build:agents writes): appliances started from a clone before the development key was read in
 * place kept such a copy, which would win over every key build:agents makes later. Returns
 * whether it removed one.
 */
function removeDevelopmentCopy(path: string): boolean {
  if (!readIfExists(path)?.startsWith(DEV_RELEASE_KEY_COMMENT)) return false;
  try {
    unlinkSync(path);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot remove the copy of a development release key ${path}`, { path }, { cause });
  }
  return true;
}

/**
 * The agent release public key a bundle build trusts, read at each build rather than once at
 * start, so that a key `npm run build:agents` makes after the appliance started counts at once:
 * DATA_DIR/release.pub (kept there by the appliance from its configured file), else the
 * development key in .dev-keys/ at the package root (DEV_RELEASE_PUBLIC_KEY). Returns the file's
 * path and text, undefined when neither exists; ERR_DATA_DIR_UNUSABLE when one cannot be read.
 */
export function readReleasePublicKey(dataDir: string): { path: string; text: string } | undefined {
  for (const path of [join(dataDir, RELEASE_PUBLIC_KEY_FILE), DEV_RELEASE_PUBLIC_KEY]) {
    const text = readIfExists(path);
    if (text !== undefined) return { path, text };
  }
  return undefined;
}
