import { loadAgentConfig } from '../config/load.ts';
import type { LoadedConfig } from '../config/types.ts';
import type { AgentLogger } from '../log/logger.ts';

/** Loads the configuration for a command and logs its warnings (unknown keys, version). */
export function loadConfigLogged(configFile: string, env: NodeJS.ProcessEnv, log: AgentLogger): LoadedConfig {
  const loaded = loadAgentConfig({ file: configFile, env });
  for (const warning of loaded.warnings) log.warn({ warning }, 'configuration warning');
  return loaded;
}
