/**
 * Test support only (never imported by the bundler itself): a throw-away appliance
 * data directory, a fake signed release directory, and install templates, so the
 * bundler can be exercised before the real executables and scripts exist. The
 * bundler treats executables and templates as opaque bytes.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blake2b512, keyIdHex, publicKeyFile, signDigest, signingKeyFromSeed, type SigningKey } from '../../common/minisign.ts';
import { ensureTlsMaterial } from '../../appliance/pki/certificates.ts';
import { ensureBundleKey, RELEASE_PUBLIC_KEY_FILE } from '../../appliance/pki/signing-keys.ts';
import { openStores } from '../../appliance/store/index.ts';
import { formatSha256Sums, sha256Hex } from '../../bundler/lib/sha256sums.ts';
import { SERVICE_WRAPPER_NAME } from '../../bundler/build/inputs.ts';
import { ALL_TARGETS, releaseExecutableName, type Target } from '../../bundler/lib/targets.ts';

export const FIXTURE_AGENT_VERSION = '0.1.0';

export interface FixtureAppliance {
  readonly root: string;
  readonly dataDir: string;
  readonly releaseKey: SigningKey;
  readonly bundleKey: SigningKey;
  readonly agentsDir: string;
  readonly templatesDir: string;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A fake release: each executable is a small distinct file, SHA256SUMS signed by the release key. */
export function writeReleaseDir(agentsDir: string, releaseKey: SigningKey, options: { version?: string; targets?: readonly Target[]; bytes?: number } = {}): string {
  const dir = join(agentsDir, options.version ?? FIXTURE_AGENT_VERSION);
  mkdirSync(dir, { recursive: true });
  const entries = (options.targets ?? ALL_TARGETS).map((target) => {
    const name = releaseExecutableName(target);
    const header = Buffer.from(`#!/bin/sh\necho fake ct-ops-agent ${name}\n`);
    const data = options.bytes ? Buffer.concat([header, Buffer.alloc(options.bytes, name)]) : header;
    writeFileSync(join(dir, name), data, { mode: 0o755 });
    return { name, sha256: sha256Hex(data) };
  });
  const wrapper = Buffer.from('MZ fixture service wrapper\n');
  writeFileSync(join(dir, SERVICE_WRAPPER_NAME), wrapper, { mode: 0o755 });
  entries.push({ name: SERVICE_WRAPPER_NAME, sha256: sha256Hex(wrapper) });
  const sums = formatSha256Sums(entries);
  writeFileSync(join(dir, 'SHA256SUMS'), sums);
  // The trusted comment as scripts/agents/release-files.mjs writes it: the appliance's import and the root helper read the version from it.
  const trustedComment = `ct-ops-agent ${options.version ?? FIXTURE_AGENT_VERSION} executables, signed 2026-01-01T00:00:00.000Z by fixture key ${keyIdHex(releaseKey.keyId)}`;
  writeFileSync(join(dir, 'SHA256SUMS.minisig'), signDigest(blake2b512(sums), releaseKey, trustedComment, 'fixture release'));
  return dir;
}

/** Stand-ins for installers/, systemd/, launchd/ and windows/, named as docs/bundle-format.md says. */
export function writeTemplates(root: string): string {
  const files: Record<string, string> = {
    'installers/install.sh': '#!/bin/sh\nset -eu\necho "install (fixture)"\n',
    'installers/uninstall.sh': '#!/bin/sh\nset -eu\necho "uninstall (fixture)"\n',
    'installers/ct-ops-agent-helper.sh': '#!/bin/sh\nset -eu\necho "helper (fixture)"\n',
    'installers/install.ps1': "$ErrorActionPreference = 'Stop'\nWrite-Output 'install (fixture)'\n",
    'installers/uninstall.ps1': "$ErrorActionPreference = 'Stop'\nWrite-Output 'uninstall (fixture)'\n",
    'systemd/ct-ops-agent.service': '[Unit]\nDescription=CT-Ops agent (fixture)\n[Service]\nExecStart=/usr/local/bin/ct-ops-agent\n',
    'systemd/ct-ops-agent-helper.path': '[Path]\nPathChanged=/var/lib/ct-ops/agent/request\n',
    'systemd/ct-ops-agent-helper.service': '[Service]\nType=oneshot\nExecStart=/bin/true\n',
    'systemd/unrelated.service': '[Service]\nExecStart=/bin/false\n',
    'launchd/com.ct-ops.agent.plist': '<?xml version="1.0"?>\n<plist version="1.0"><dict/></plist>\n',
    'launchd/com.ct-ops.agent-helper.plist': '<?xml version="1.0"?>\n<plist version="1.0"><dict/></plist>\n',
    'windows/ct-ops-agent-service.exe.config': '<configuration/>\n',
    'windows/ct-ops-agent-service.xml': '<service><id>ct-ops-agent</id></service>\n',
  };
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

/** A data directory as a started appliance leaves it: CA, bundle key, release.pub, database. */
export async function createFixtureAppliance(options: { executableBytes?: number } = {}): Promise<FixtureAppliance> {
  const root = tempDir('ct-ops-bundler-');
  const dataDir = join(root, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  await ensureTlsMaterial(dataDir, ['localhost'], new Date());
  const bundleKey = ensureBundleKey(dataDir);
  const releaseKey = signingKeyFromSeed(randomBytes(32));
  writeFileSync(join(dataDir, RELEASE_PUBLIC_KEY_FILE), publicKeyFile(releaseKey, `CT-Ops release key ${keyIdHex(releaseKey.keyId)}`));
  const stores = openStores(join(dataDir, 'appliance.db'));
  await stores.organisations.ensureDefault(Date.now());
  stores.close();
  const agentsDir = join(root, 'agents');
  writeReleaseDir(agentsDir, releaseKey, options.executableBytes !== undefined ? { bytes: options.executableBytes } : {});
  const templatesDir = writeTemplates(join(root, 'templates'));
  return { root, dataDir, releaseKey, bundleKey, agentsDir, templatesDir };
}

/** The env that makes a running appliance build bundles from the fixture's release and templates. */
export function fixtureBuildEnv(fixture: FixtureAppliance): NodeJS.ProcessEnv {
  return { CT_OPS_BUNDLE_AGENTS_DIR: fixture.agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: fixture.templatesDir };
}

/** The local admin credential a started appliance wrote into the fixture's data directory. */
export function fixtureAdminCredential(fixture: FixtureAppliance): string {
  return readFileSync(join(fixture.dataDir, 'admin-cli.token'), 'utf8').trim();
}
