/**
 * manifest.json, SHA256SUMS and SHA256SUMS.minisig (docs/bundle-format.md). The
 * manifest's keys are written in a fixed order and its files sorted, so the same
 * inputs give the same bytes; it never holds the token secret.
 */
import { blake2b512, signDigest, type SigningKey } from '../../common/minisign.ts';
import { byName, formatSha256Sums } from '../lib/sha256sums.ts';
import type { Target } from '../lib/targets.ts';
import { bundleFile, type BundleFile } from '../lib/bundle-file.ts';
import type { BundleToken } from './token.ts';

export const MANIFEST_FILE = 'manifest.json';
export const SUMS_FILE = 'SHA256SUMS';
export const SIGNATURE_FILE = 'SHA256SUMS.minisig';
export const MANIFEST_FORMAT = 1;

export interface ManifestFileEntry {
  path: string;
  sha256: string;
  size: number;
  mode: '0644' | '0755';
}

export interface Manifest {
  format: number;
  bundle_id: string;
  created_at: string;
  created_by: string;
  os: string;
  arch: string;
  agent_version: string;
  /** The first ingest address (the only one in most bundles). */
  ingest_address: string;
  /** Every ingest address in the order agents try them; present only when there are several. */
  ingest_addresses?: string[];
  ca_fingerprint_sha256: string;
  /** Every CA in the bundle's ca.crt, the current first (two during a CA rotation). */
  ca_fingerprints_sha256: string[];
  token: { mode: string; id?: string; expires_at?: string };
  files: ManifestFileEntry[];
}

export interface ManifestInput {
  readonly bundleId: string;
  readonly createdAt: string;
  readonly createdBy: string;
  readonly target: Target;
  readonly agentVersion: string;
  readonly addresses: readonly string[];
  readonly caFingerprint: string;
  readonly caFingerprints: readonly string[];
  readonly token: BundleToken;
}

export function modeText(mode: number): '0644' | '0755' {
  return mode === 0o755 ? '0755' : '0644';
}

export function buildManifest(input: ManifestInput, files: readonly BundleFile[]): Manifest {
  const { token } = input;
  return {
    format: MANIFEST_FORMAT,
    bundle_id: input.bundleId,
    created_at: input.createdAt,
    created_by: input.createdBy,
    os: input.target.os,
    arch: input.target.arch,
    agent_version: input.agentVersion,
    ingest_address: input.addresses[0]!,
    // Only with several: a one-address bundle's manifest stays byte for byte what it was.
    ...(input.addresses.length > 1 ? { ingest_addresses: [...input.addresses] } : {}),
    ca_fingerprint_sha256: input.caFingerprint,
    ca_fingerprints_sha256: [...input.caFingerprints],
    token: token.mode === 'none' ? { mode: 'none' } : { mode: token.mode, id: token.id!, expires_at: new Date(token.expiresAt!).toISOString() },
    files: [...files]
      .sort((a, b) => byName(a.name, b.name))
      .map((file) => ({ path: file.name, sha256: file.sha256, size: file.data.length, mode: modeText(file.mode) })),
  };
}

/**
 * Adds manifest.json, SHA256SUMS (every file, manifest included) and its signature
 * to the bundle's files. The trusted comment is signed too; it names the bundle and
 * its creation time, so it is as reproducible as the rest.
 */
export function sealBundle(files: readonly BundleFile[], manifest: Manifest, key: SigningKey): BundleFile[] {
  const listed = [...files, bundleFile(MANIFEST_FILE, Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), 0o644)];
  const sums = Buffer.from(formatSha256Sums(listed.map((file) => ({ name: file.name, sha256: file.sha256 }))));
  const timestamp = Math.floor(Date.parse(manifest.created_at) / 1000);
  const signature = signDigest(blake2b512(sums), key, `timestamp:${timestamp}\tfile:${SUMS_FILE}\tbundle:${manifest.bundle_id}`, `signature from CT-Ops appliance bundle key`);
  return [...listed, bundleFile(SUMS_FILE, sums, 0o644), bundleFile(SIGNATURE_FILE, Buffer.from(signature), 0o644)];
}
