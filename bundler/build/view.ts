import type { BuiltBundle } from './build.ts';

/** The public description of a built bundle (CLI --json and the admin API): never the token secret. */
export interface BundleView {
  bundle_id: string;
  file: string;
  size: number;
  sha256: string;
  created_at: string;
  os: string;
  arch: string;
  agent_version: string;
  ingest_address: string;
  /** Present only when the bundle names several ingest addresses (ingest_address is the first). */
  ingest_addresses?: string[];
  token: { mode: string; id?: string; expires_at?: string };
  ca_fingerprint_sha256: string;
  bundle_key_id: string;
  release_key_id: string;
}

export function bundleView(built: BuiltBundle): BundleView {
  return {
    bundle_id: built.bundleId,
    file: built.file,
    size: built.size,
    sha256: built.sha256,
    created_at: built.createdAt,
    os: built.target.os,
    arch: built.target.arch,
    agent_version: built.agentVersion,
    ingest_address: built.addresses[0]!,
    ...(built.addresses.length > 1 ? { ingest_addresses: [...built.addresses] } : {}),
    token: {
      mode: built.token.mode,
      ...(built.token.id !== undefined ? { id: built.token.id } : {}),
      ...(built.token.expiresAt !== undefined ? { expires_at: built.token.expiresAt } : {}),
    },
    ca_fingerprint_sha256: built.caFingerprint,
    bundle_key_id: built.bundleKeyId,
    release_key_id: built.releaseKeyId,
  };
}
