/**
 * What a bundle is made from, read and checked before anything is created: the
 * appliance's bundle key, CA and trusted release key (from the data directory), and
 * the agent executable, accepted only when the release SHA256SUMS is signed by that
 * release key and lists the executable's exact hash.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { seedFromPem } from '../../common/ed25519-pem.ts';
import { CtOpsError } from '../../common/errors.ts';
import { keyIdHex, parsePublicKeyFile, signingKeyFromSeed, verifySignature, type PublicKey, type SigningKey } from '../../common/minisign.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { CA_CERT_FILE } from '../../appliance/lib/data-dir-files.ts';
import { readTrustedCaPems } from '../../appliance/lib/trusted-cas.ts';
import { certificateFingerprint } from '../../appliance/pki/certificates.ts';
import { parseCertificates } from '../../common/trust-bundle.ts';
import { BUNDLE_KEY_FILE, DEV_RELEASE_PUBLIC_KEY, RELEASE_PUBLIC_KEY_FILE, readReleasePublicKey } from '../../appliance/pki/signing-keys.ts';
import { parseSha256Sums, sha256Hex } from '../lib/sha256sums.ts';
import { releaseExecutableName, type Target } from '../lib/targets.ts';

export interface ApplianceInputs {
  readonly bundleKey: SigningKey;
  readonly bundleKeyId: string;
  /** The bundle's ca.crt: the CA, and during a CA rotation the next CA after it. */
  readonly caPem: Buffer;
  /** SHA-256 of the first certificate of caPem: the CA that issues the server certificate now. */
  readonly caFingerprint: string;
  /** SHA-256 of every certificate in caPem, in order: what the bundle's agents trust. */
  readonly caFingerprints: readonly string[];
  /** release.pub as written by the appliance: goes into agent.toml [update]. */
  readonly releasePublicKeyText: string;
  readonly releaseKey: PublicKey;
  readonly releaseKeyId: string;
}

export interface AgentExecutable {
  readonly version: string;
  readonly data: Buffer;
  readonly sha256: string;
}

const RELEASE_SUMS = 'SHA256SUMS';
const VERSION_DIR = /^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$/;

function readInput(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `cannot read ${what} ${path}${(cause as NodeJS.ErrnoException).code === 'ENOENT' ? ' (it does not exist)' : ''}`, { path }, { cause });
  }
}

export function loadApplianceInputs(dataDir: string): ApplianceInputs {
  const keyPath = join(dataDir, BUNDLE_KEY_FILE);
  const seed = seedFromPem(readInput(keyPath, 'the bundle signing key').toString('utf8'));
  if (!seed) throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${keyPath} is not a PKCS#8 Ed25519 private key`, { path: keyPath });
  const bundleKey = signingKeyFromSeed(seed);

  const caPath = join(dataDir, CA_CERT_FILE);
  // During a CA rotation the bundle's ca.crt also holds the next CA: an agent installed now keeps
  // working once the appliance switches to it (it also gets the trust bundle on its first stream).
  readInput(caPath, 'the appliance CA certificate');
  const caPem = Buffer.from(readTrustedCaPems(dataDir));
  let caFingerprints: string[];
  try {
    caFingerprints = parseCertificates(caPem.toString('utf8')).map((certificate) => certificateFingerprint(certificate.toString()));
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${caPath} is not a PEM certificate`, { path: caPath }, { cause });
  }
  if (caFingerprints.length === 0) throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${caPath} is not a PEM certificate`, { path: caPath });

  const release = readReleasePublicKey(dataDir);
  if (release === undefined) {
    const configuredCopy = join(dataDir, RELEASE_PUBLIC_KEY_FILE);
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `no agent release public key: ${configuredCopy} does not exist (set release_public_key_file on the appliance), nor does the development key ${DEV_RELEASE_PUBLIC_KEY} (npm run build:agents makes it in a clone)`, { path: configuredCopy });
  }
  const releasePublicKeyText = release.text;
  let releaseKey: PublicKey;
  try {
    releaseKey = parsePublicKeyFile(releasePublicKeyText);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${release.path} is not a minisign public key`, { path: release.path }, { cause });
  }
  return {
    bundleKey,
    bundleKeyId: keyIdHex(bundleKey.keyId),
    caPem,
    caFingerprint: caFingerprints[0]!,
    caFingerprints,
    releasePublicKeyText: releasePublicKeyText.trimEnd(),
    releaseKey,
    releaseKeyId: keyIdHex(releaseKey.keyId),
  };
}

/**
 * The agent version to package: the one asked for; else this build's own version
 * when its release directory exists; else the only release directory there is.
 */
export function resolveAgentVersion(agentsDir: string, requested?: string): string {
  if (requested !== undefined) {
    if (!VERSION_DIR.test(requested)) throw new CtOpsError('ERR_INVALID_ARGUMENT', `agent version ${JSON.stringify(requested)} is not a version number`, { field: 'agent_version' });
    return requested;
  }
  let versions: string[];
  try {
    versions = readdirSync(agentsDir, { withFileTypes: true }).filter((entry) => entry.isDirectory() && VERSION_DIR.test(entry.name)).map((entry) => entry.name);
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `no agent executables at ${agentsDir} (run npm run build:agents, or give --agents-dir)`, { path: agentsDir }, { cause });
  }
  if (versions.includes(PRODUCT_VERSION)) return PRODUCT_VERSION;
  if (versions.length === 1) return versions[0]!;
  throw new CtOpsError(
    'ERR_BUNDLE_INPUT_MISSING',
    versions.length === 0 ? `no agent release directory under ${agentsDir}` : `several agent versions under ${agentsDir} (${versions.sort().join(', ')}): choose one with --agent-version`,
    { path: agentsDir },
  );
}

/** The file name of the service wrapper (WinSW) in an agent release and in a windows bundle. */
export const SERVICE_WRAPPER_NAME = 'ct-ops-agent-service.exe';

/**
 * Reads one file of an agent release (an executable, the Windows service wrapper) once
 * and checks those very bytes against the release SHA256SUMS signed by the trusted key.
 */
export function loadReleaseFile(agentsDir: string, version: string, name: string, releaseKey: PublicKey): AgentExecutable {
  const dir = join(agentsDir, version);
  const sumsPath = join(dir, RELEASE_SUMS);
  const sums = readInput(sumsPath, 'the agent release checksums');
  const signature = readInput(`${sumsPath}.minisig`, 'the signature of the agent release checksums').toString('utf8');
  try {
    verifySignature(signature, { data: sums }, releaseKey);
  } catch (cause) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_UNTRUSTED', `${sumsPath} is not signed by the release key this appliance trusts (${keyIdHex(releaseKey.keyId)}): ${(cause as Error).message}`, { path: sumsPath }, { cause });
  }
  const expected = parseSha256Sums(sums.toString('utf8')).digests.get(name);
  if (expected === undefined) throw new CtOpsError('ERR_BUNDLE_INPUT_UNTRUSTED', `${sumsPath} does not list ${name}`, { path: sumsPath });
  const path = join(dir, name);
  const data = readInput(path, `the release file ${name}`);
  const sha256 = sha256Hex(data);
  if (sha256 !== expected) {
    throw new CtOpsError('ERR_BUNDLE_INPUT_UNTRUSTED', `${path} does not match the signed release checksums (sha256 ${sha256}, expected ${expected})`, { path });
  }
  return { version, data, sha256 };
}

/** The target's agent executable from the signed release. */
export function loadAgentExecutable(agentsDir: string, version: string, target: Target, releaseKey: PublicKey): AgentExecutable {
  return loadReleaseFile(agentsDir, version, releaseExecutableName(target), releaseKey);
}
