import { CtOpsError } from '../../common/errors.ts';
import { loadIdentity } from '../identity/load.ts';
import { AgentTrust } from '../identity/trust.ts';
import type { AgentLogger } from '../log/logger.ts';
import { probeIngestTls } from '../transport/tls-probe.ts';
import { loadConfigLogged } from './startup.ts';

/**
 * -check: everything the agent needs before it can enrol, without enrolling: a valid
 * configuration, a usable identity in data_dir, and a reachable ingest service whose
 * certificate the agent trusts (ca_cert_file, or the trust bundle stored by a CA rotation).
 * Every configured ingest address is probed and logged (reachable and trusted, or why not);
 * the check passes when at least one is. Throws the first problem as a CtOpsError: with several
 * addresses and none usable, the first address's error, its message naming every failure.
 */
export async function checkAgent(configFile: string, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<string> {
  const { config } = loadConfigLogged(configFile, env, log);
  loadIdentity(config.dataDir, log);
  log.info({ data_dir: config.dataDir }, 'agent identity ready');
  const caPem = AgentTrust.load(config.dataDir, config.ingest.caPem, log).caPem;
  const usable: string[] = [];
  const failures: CtOpsError[] = [];
  for (const [index, address] of config.ingest.addresses.entries()) {
    const fields = { address: address.target, address_unicode: address.unicodeTarget, address_index: index };
    try {
      await probeIngestTls({ address, caCertFile: config.ingest.caCertFile, caPem });
      log.info(fields, 'ingest reachable and trusted');
      usable.push(address.display);
    } catch (error) {
      if (!(error instanceof CtOpsError)) throw error;
      log.error({ ...fields, error_code: error.code, error: error.message }, 'ingest address not usable');
      failures.push(error);
    }
  }
  const [first] = failures;
  if (usable.length === 0 && first !== undefined) {
    if (failures.length === 1) throw first;
    throw new CtOpsError(first.code, `no ingest address is usable: ${failures.map((failure) => failure.message).join('; ')}`, first.details, { cause: first });
  }
  const unusable = failures.length === 0 ? '' : `; ${failures.length} of ${config.ingest.addresses.length} addresses not usable (${failures.map((failure) => failure.code).join(', ')}; see the log)`;
  return `configuration ${config.configFile} is valid; ingest ${usable.join(', ')} ${usable.length === 1 ? 'is' : 'are'} reachable and trusted${unusable}`;
}
