/**
 * agent.toml, written with smol-toml (never by string pasting): every value, tag
 * values included, is a TOML string the agent reads back as data.
 */
import { stringify } from 'smol-toml';
import { hostPaths, type TargetOs } from '../lib/targets.ts';
import type { Tags } from '../lib/validate.ts';

export const HEARTBEAT_INTERVAL_SECS = 30;

export interface AgentTomlInput {
  readonly os: TargetOs;
  /** One ingest target (written as `address`), or several (`addresses`, tried in this order). */
  readonly addresses: readonly string[];
  readonly orgToken?: string;
  readonly tags: Tags;
  readonly releasePublicKey: string;
  /** The bundle's id, which the agent sends when it enrols: the host's claim to have come from this bundle. */
  readonly installBundleId: string;
}

export function renderAgentToml(input: AgentTomlInput): string {
  const paths = hostPaths(input.os);
  const agent: Record<string, unknown> = {};
  if (input.orgToken !== undefined) agent.org_token = input.orgToken;
  agent.data_dir = paths.dataDir;
  agent.heartbeat_interval_secs = HEARTBEAT_INTERVAL_SECS;
  agent.install_bundle_id = input.installBundleId;
  if (Object.keys(input.tags).length > 0) agent.tags = { ...input.tags };
  const document = {
    ingest: { ...(input.addresses.length === 1 ? { address: input.addresses[0] } : { addresses: [...input.addresses] }), ca_cert_file: paths.caCertFile },
    agent,
    update: { release_public_key: input.releasePublicKey },
  };
  return `# CT-Ops agent configuration, written by ct-ops-bundle.\n${stringify(document)}`;
}
