import { loadIdentity } from '../identity/load.ts';
import { AgentTrust } from '../identity/trust.ts';
import type { AgentLogger } from '../log/logger.ts';
import { probeIngestTls } from '../transport/tls-probe.ts';
import { loadConfigLogged } from './startup.ts';

/**
 * -check: everything the agent needs before it can enrol, without enrolling: a valid
 * configuration, a usable identity in data_dir, and a reachable ingest service whose
 * certificate the agent trusts (ca_cert_file, or the trust bundle stored by a CA rotation). Throws
 * the first problem as a CtOpsError.
 */
export async function checkAgent(configFile: string, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<string> {
  const { config } = loadConfigLogged(configFile, env, log);
  loadIdentity(config.dataDir, log);
  log.info({ data_dir: config.dataDir }, 'agent identity ready');
  await probeIngestTls({ ...config.ingest, caPem: AgentTrust.load(config.dataDir, config.ingest.caPem, log).caPem });
  log.info({ address: config.ingest.address.target, address_unicode: config.ingest.address.unicodeTarget }, 'ingest reachable and trusted');
  return `configuration ${config.configFile} is valid; ingest ${config.ingest.address.display} is reachable and trusted`;
}
