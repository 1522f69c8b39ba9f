/**
 * Builds one install bundle (one OS/arch) from a validated request: checks every
 * input first, then takes the token, then writes the signed zip, then records the
 * bundle in the appliance's database (install_bundles) when it has one. A token this
 * build created is revoked again if the zip cannot be written or recorded.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import { derivedId, newId } from '../../common/ids.ts';
import { bundleFile, type BundleFile } from '../lib/bundle-file.ts';
import { defaultAgentsDir, defaultTemplatesDir } from '../lib/paths.ts';
import { sha256Hex } from '../lib/sha256sums.ts';
import { bundleBaseName, executableName, targetName, type Target } from '../lib/targets.ts';
import type { BundleRequest, TokenMode } from '../lib/validate.ts';
import { writeBundleZip } from '../zip/write.ts';
import { renderAgentToml } from './agent-toml.ts';
import { SERVICE_WRAPPER_NAME, loadAgentExecutable, loadApplianceInputs, loadReleaseFile, resolveAgentVersion, type AgentExecutable, type ApplianceInputs } from './inputs.ts';
import { MANIFEST_FORMAT, buildManifest, sealBundle, type Manifest } from './manifest.ts';
import { renderReadme } from './readme.ts';
import { loadTemplates } from './templates.ts';
import { resolveBundleToken, withdrawBundleToken, type BundleToken, type TokenAuthority } from './token.ts';

export interface BuildEnvironment {
  /** The appliance data directory: bundle.key, ca.crt, release.pub. */
  readonly dataDir: string;
  /** Where the zip is written. */
  readonly outDir: string;
  /** dist/agents by default; holds <version>/ct-ops-agent-<os>-<arch>[.exe] and a signed SHA256SUMS. */
  readonly agentsDir?: string;
  /** The directory holding installers/, systemd/, launchd/, windows/ (the package root by default). */
  readonly templatesDir?: string;
  readonly agentVersion?: string;
  /**
   * SOURCE_DATE_EPOCH (seconds). Fixes created_at and the zip entry times, and, for
   * token modes none and existing, derives the bundle id from the inputs, so the
   * same inputs give a byte-identical zip.
   */
  readonly sourceDateEpoch?: number;
  /**
   * The appliance's stores; required for token modes new and existing. Given, the built bundle is
   * recorded there (install_bundles: the console's and GET /api/v1/bundles' list). Without it (token
   * mode none built by `ct-ops-bundle` alone, which reaches no appliance) the bundle is not recorded.
   */
  readonly tokens?: TokenAuthority;
  readonly onProgress?: (message: string) => void;
  readonly now?: () => number;
}

export interface BuiltBundle {
  readonly path: string;
  readonly file: string;
  readonly size: number;
  readonly sha256: string;
  readonly bundleId: string;
  readonly createdAt: string;
  readonly target: Target;
  readonly agentVersion: string;
  /** The ingest targets in agent.toml, in the order agents try them. */
  readonly addresses: readonly string[];
  readonly token: { readonly mode: TokenMode; readonly id?: string; readonly expiresAt?: string };
  readonly caFingerprint: string;
  readonly bundleKeyId: string;
  readonly releaseKeyId: string;
  readonly manifest: Manifest;
}

/** A bundle id that depends only on what goes into the bundle (reproducible builds). */
function derivedBundleId(request: BundleRequest, inputs: ApplianceInputs, executable: AgentExecutable, templates: readonly BundleFile[], createdAt: string): string {
  const material = JSON.stringify([
    MANIFEST_FORMAT,
    executable.version,
    targetName(request.target),
    // Spread: a one-address bundle keeps the id it had before bundles could name several.
    ...request.addresses,
    request.tags,
    request.label,
    request.createdBy,
    request.token.mode,
    request.token.mode === 'existing' ? request.token.id : null,
    executable.sha256,
    inputs.caFingerprints,
    inputs.bundleKeyId,
    inputs.releasePublicKeyText,
    templates.map((file) => [file.name, file.mode, file.sha256]),
    createdAt,
  ]);
  return derivedId('bnd', sha256Hex(material));
}

export async function buildBundle(request: BundleRequest, env: BuildEnvironment): Promise<BuiltBundle> {
  const progress = env.onProgress ?? (() => undefined);
  const now = env.now ?? Date.now;
  const { target } = request;
  if (request.token.mode !== 'none' && !env.tokens) throw new CtOpsError('ERR_INTERNAL', `token mode ${request.token.mode} needs the appliance database`);

  progress(`checking inputs for ${targetName(target)}`);
  const inputs = loadApplianceInputs(env.dataDir);
  const agentsDir = env.agentsDir ?? defaultAgentsDir();
  const version = resolveAgentVersion(agentsDir, env.agentVersion);
  const templates = loadTemplates(env.templatesDir ?? defaultTemplatesDir(), target.os);
  progress(`verifying the ${version} ${targetName(target)} executable against the signed release checksums`);
  const executable = loadAgentExecutable(agentsDir, version, target, inputs.releaseKey);
  // WinSW, the Windows service wrapper, ships in the signed agent release (npm run build:agents).
  const serviceWrapper = target.os === 'windows' ? loadReleaseFile(agentsDir, version, SERVICE_WRAPPER_NAME, inputs.releaseKey) : undefined;

  const createdMs = env.sourceDateEpoch !== undefined ? env.sourceDateEpoch * 1000 : now();
  const createdAt = new Date(createdMs).toISOString();
  const bundleId = env.sourceDateEpoch !== undefined && request.token.mode !== 'new' ? derivedBundleId(request, inputs, executable, templates, createdAt) : newId('bnd');

  const token: BundleToken = await resolveBundleToken(request.token, env.tokens, { target, bundleId, createdBy: request.createdBy, label: request.label, tags: request.tags }, now());
  const baseName = bundleBaseName(version, target);
  const zipPath = join(env.outDir, `${baseName}.zip`);
  try {
    const files: BundleFile[] = [
      bundleFile(executableName(target.os), executable.data, 0o755, executable.sha256),
      bundleFile(
        'agent.toml',
        Buffer.from(renderAgentToml({ os: target.os, addresses: request.addresses, orgToken: token.secret, tags: request.tags, releasePublicKey: inputs.releasePublicKeyText, installBundleId: bundleId })),
        0o644,
      ),
      bundleFile('ca.crt', inputs.caPem, 0o644),
      bundleFile('TARGET', Buffer.from(`${targetName(target)}\n`), 0o644),
      bundleFile(
        'README.md',
        Buffer.from(
          renderReadme({
            target, agentVersion: version, baseName, bundleId, createdAt, addressesDisplay: request.ingestAddresses.map((address) => address.display),
            caFingerprints: inputs.caFingerprints, bundleKeyId: inputs.bundleKeyId, releaseKeyId: inputs.releaseKeyId, token,
          }),
        ),
        0o644,
      ),
      ...templates,
      ...(serviceWrapper ? [bundleFile(SERVICE_WRAPPER_NAME, serviceWrapper.data, 0o755, serviceWrapper.sha256)] : []),
    ];
    const manifest = buildManifest({ bundleId, createdAt, createdBy: request.createdBy, target, agentVersion: version, addresses: request.addresses, caFingerprint: inputs.caFingerprint, caFingerprints: inputs.caFingerprints, token }, files);
    const sealed = sealBundle(files, manifest, inputs.bundleKey);

    progress(`writing ${zipPath}`);
    try {
      mkdirSync(env.outDir, { recursive: true });
    } catch (cause) {
      throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create the output directory ${env.outDir}`, { path: env.outDir }, { cause });
    }
    // A bundle holding an enrolment secret is readable by its owner only.
    const written = await writeBundleZip(zipPath, baseName, sealed, createdMs, token.secret !== undefined ? 0o600 : 0o644);
    if (env.tokens) {
      const { stores, orgId } = env.tokens;
      try {
        await stores.installBundles.insert({
          id: bundleId, orgId, createdAt: createdMs, createdBy: request.createdBy, os: target.os, arch: target.arch, agentVersion: version,
          addresses: [...request.addresses], tags: { ...request.tags }, label: request.label, tokenMode: token.mode, tokenId: token.id ?? null,
          zipFile: `${baseName}.zip`, zipSize: written.size, zipSha256: written.sha256, bundleKeyId: inputs.bundleKeyId, caFingerprint: inputs.caFingerprint,
        });
      } catch (error) {
        // A bundle the appliance has no record of must not circulate: its hosts would come from nowhere.
        rmSync(written.path, { force: true });
        throw error;
      }
    }
    return {
      path: written.path,
      file: `${baseName}.zip`,
      size: written.size,
      sha256: written.sha256,
      bundleId,
      createdAt,
      target,
      agentVersion: version,
      addresses: request.addresses,
      token: { mode: token.mode, ...(token.id !== undefined ? { id: token.id } : {}), ...(token.expiresAt !== undefined ? { expiresAt: new Date(token.expiresAt).toISOString() } : {}) },
      caFingerprint: inputs.caFingerprint,
      bundleKeyId: inputs.bundleKeyId,
      releaseKeyId: inputs.releaseKeyId,
      manifest,
    };
  } catch (error) {
    await withdrawBundleToken(token, env.tokens, now());
    throw error;
  }
}
