import { CtOpsError } from '../../common/errors.ts';
import type { AgentConfig, LoadedConfig } from './types.ts';

export type ReloadResult =
  | { readonly ok: true; readonly config: AgentConfig; readonly warnings: readonly string[]; readonly message: string }
  | { readonly ok: false; readonly error: CtOpsError; readonly message: string };

/**
 * Re-reads the configuration with the same validation as at start-up. Only the
 * heartbeat interval takes effect live; the address list, CA, data_dir, token and tags are
 * bound to the open connection and identity, so changes to them wait for a restart
 * (the result says which). An invalid file changes nothing.
 */
export function reloadConfig(current: AgentConfig, load: () => LoadedConfig): ReloadResult {
  let loaded: LoadedConfig;
  try {
    loaded = load();
  } catch (error) {
    const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_CONFIG_INVALID', (error as Error).message, {}, { cause: error });
    return { ok: false, error: known, message: `${known.code}: ${known.message}; the previous configuration stays in effect` };
  }
  const next = loaded.config;
  const needRestart = [
    targets(next) !== targets(current) && (next.ingest.addresses.length > 1 || current.ingest.addresses.length > 1 ? 'ingest.addresses' : 'ingest.address'),
    (next.ingest.caCertFile !== current.ingest.caCertFile || next.ingest.caPem !== current.ingest.caPem) && 'ingest.ca_cert_file',
    next.dataDir !== current.dataDir && 'agent.data_dir',
    next.orgToken !== current.orgToken && 'agent.org_token',
    JSON.stringify(sorted(next.tags)) !== JSON.stringify(sorted(current.tags)) && 'agent.tags',
  ].filter((name): name is string => typeof name === 'string');
  const applied = `heartbeat_interval_secs=${next.heartbeatIntervalSecs}`;
  const message = needRestart.length === 0 ? applied : `${applied}; restart the agent to apply ${needRestart.join(', ')}`;
  return { ok: true, config: Object.freeze({ ...current, heartbeatIntervalSecs: next.heartbeatIntervalSecs }), warnings: loaded.warnings, message };
}

/** The ingest addresses in order: the agent tries them in that order, so a reordered list is a change. */
function targets(config: AgentConfig): string {
  return config.ingest.addresses.map((address) => address.target).join(' ');
}

function sorted(tags: Readonly<Record<string, string>>): [string, string][] {
  return Object.entries(tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
