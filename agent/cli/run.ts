import { mkdirSync } from 'node:fs';
import { machineFingerprint } from '../identity/fingerprint.ts';
import { newInstanceId, readHostFacts } from '../identity/host-facts.ts';
import { AgentTrust } from '../identity/trust.ts';
import { Agent } from '../lifecycle/agent.ts';
import type { AgentLogger } from '../log/logger.ts';
import { machineIdSourceFor } from '../platform/machine-id/index.ts';
import { describeHost } from '../registration/host.ts';
import { uninstallHandler, writableHelperSpool } from '../tasks/uninstall.ts';
import { launchUpdateWatch, windowsUpdatePaths } from '../update/update-watch.ts';
import { AgentUpdater } from '../update/updater.ts';
import { releaseExecutableOf } from '../../bundler/lib/targets.ts';
import { IngestAddresses } from '../transport/addresses.ts';
import { createGrpcTransport } from '../transport/grpc-transport.ts';
import { createVitalsSampler } from '../vitals/sample.ts';
import { reportFatal } from './fatal.ts';
import { loadConfigLogged } from './startup.ts';

/** Runs the agent until a signal (exit 0) or a fatal error (its exit code). */
export async function runAgent(configFile: string, env: NodeJS.ProcessEnv, log: AgentLogger): Promise<number> {
  const { config } = loadConfigLogged(configFile, env, log);
  const fingerprint = machineFingerprint(machineIdSourceFor(process.platform), env, log);
  const host = describeHost(config, fingerprint);
  const instanceId = newInstanceId();
  const trust = AgentTrust.load(config.dataDir, config.ingest.caPem, log);
  if (trust.generation > 0) log.info({ generation: trust.generation }, 'trusting the stored trust bundle');
  log.info({ instance_id: instanceId }, 'agent process instance');
  const addresses = new IngestAddresses(config.ingest.addresses);
  // Windows has no root helper: the agent (LocalSystem) starts the update watcher itself.
  const windows = process.platform === 'win32' ? windowsUpdatePaths(env, process.execPath) : undefined;
  const windowsSpool = windows && madeFolder(windows.spool, log);
  const selfUpdate = new AgentUpdater({
    dataDir: config.dataDir,
    running: { version: host.agentVersion, executableName: releaseExecutableOf(host) ?? '' },
    releaseKey: config.releaseKey,
    spoolDir: windows ? windowsSpool : writableHelperSpool(process.platform, env),
    startInstaller: windows && (() => launchUpdateWatch(windows, process.execPath, configFile)),
    // From the appliance instance the agent streams to, over the TLS it trusts for ingest.
    source: (offer, file) => ({ host: addresses.current.host, port: offer.https_port, path: `${offer.download_path}${file}`, jwt: agent.jwt ?? '', caPem: trust.caPem }),
    changed: () => agent.flushHeartbeat(),
    log,
  });
  const agent: Agent = new Agent({
    config,
    transport: createGrpcTransport(addresses, () => trust.caPem),
    addresses,
    trust,
    host,
    facts: () => readHostFacts(host, instanceId),
    vitals: createVitalsSampler(config.dataDir),
    log,
    reload: () => loadConfigLogged(configFile, env, log),
    taskHandlers: { agent_uninstall: uninstallHandler({ log, env }) },
    selfUpdate,
  });
  const onSignal = (signal: NodeJS.Signals) => agent.stop(signal);
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const exit = await agent.run();
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  if (exit.error !== undefined) return reportFatal(exit.error, log);
  log.info('agent stopped');
  return exit.exitCode;
}

/** `path`, created when missing; undefined (logged) when it cannot be: updates are then unavailable, the agent runs on. */
function madeFolder(path: string, log: AgentLogger): string | undefined {
  try {
    mkdirSync(path, { recursive: true });
    return path;
  } catch (error) {
    log.warn({ err: error, path }, 'cannot create the update spool: self-update is unavailable on this host');
    return undefined;
  }
}
