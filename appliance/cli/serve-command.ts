import { Command, Option } from 'commander';
import { CtOpsError, ExitCode } from '../../common/errors.ts';
import type { RunningAppliance } from '../serve.ts';
import { escapeForTerminal } from '../../common/agent-text.ts';
import { adminCommandPrefix, shellWord } from './invocation.ts';
import { isJournalStream, writeInitialPassword } from '../admin/initial-password.ts';
import type { Logger } from 'pino';

interface ServeOptions {
  config?: string;
  dataDir?: string;
  grpcPort?: string;
  httpPort?: string;
  listen?: string;
  san?: string[];
  jwtTtlSecs?: string;
  pendingPollSecs?: string;
  inventorySweepSecs?: string;
  releasePublicKeyFile?: string;
  database?: string;
  databasePoolSize?: string;
}

export function serveCommand(): Command {
  return new Command('serve')
    .description('run the appliance: gRPC ingest for agents (TLS) and HTTPS for the admin API')
    .option('--config <file>', 'appliance TOML file (also CT_OPS_APPLIANCE_CONFIG)')
    .option('--data-dir <dir>', 'where the database, CA, keys and credentials live (default ./data)')
    .option('--grpc-port <port>', 'gRPC port for agents (default 9443; 0 picks a free port)')
    .option('--http-port <port>', 'HTTPS port for the admin API (default 8443; 0 picks a free port)')
    .option('--listen <address>', 'address to listen on (default 0.0.0.0)')
    .addOption(new Option('--san <name>', 'a hostname or IP the server certificate names (repeatable; a Unicode name is written in its IDNA form, xn--...)').argParser((value: string, previous: string[] = []) => [...previous, value]))
    .option('--jwt-ttl-secs <secs>', 'lifetime of agent JWTs (default 86400)')
    .option('--pending-poll-secs <secs>', 'how often pending agents poll (default 30)')
    .option('--inventory-sweep-secs <secs>', 'how often the software sweeper queues due inventory scans (default 60)')
    .option('--database <url>', 'postgres://USER:PASSWORD@HOST:PORT/DATABASE to keep the store on PostgreSQL 15 (also CT_OPS_APPLIANCE_DATABASE; default: the SQLite file in the data directory)')
    .option('--database-pool-size <n>', 'PostgreSQL: connections kept open at most (default 10)')
    .option('--release-public-key-file <file>', 'minisign public key of agent releases to trust (kept as DATA_DIR/release.pub)')
    .action(async (options: ServeOptions) => {
      // The server's modules (fastify, gRPC, x509, SQLite) load here, not when the CLI starts:
      // every other command is a short HTTPS call that must not pay for them.
      const [{ loadApplianceConfig }, { createLogger }, { startAppliance }] = await Promise.all([import('../config/load.ts'), import('../lib/logger.ts'), import('../serve.ts')]);
      const sources = {
        file: options.config,
        env: process.env,
        flags: {
          data_dir: options.dataDir,
          grpc_port: options.grpcPort,
          http_port: options.httpPort,
          listen: options.listen,
          sans: options.san,
          jwt_ttl_secs: options.jwtTtlSecs,
          pending_poll_secs: options.pendingPollSecs,
          inventory_sweep_secs: options.inventorySweepSecs,
          release_public_key_file: options.releasePublicKeyFile,
          database: options.database,
          database_pool_size: options.databasePoolSize,
        },
      };
      const config = loadApplianceConfig(sources);
      const log = createLogger(config.logLevel);
      // `certs rotate-server` reads the SANs again from the same sources: the file may have been edited
      // since; the flags and the environment stay what this process started with (a restart changes those).
      const appliance = await startAppliance(config, log, { sans: () => loadApplianceConfig(sources).sans });
      printWelcome(appliance, config.dataDir, log);
      await waitForSignal(appliance);
    });
}

/**
 * Prints where agents connect and what to trust, to stderr. The first admin's password goes to the
 * terminal (or pipe) that started the appliance; when stderr is systemd's journal, which the
 * adm/systemd-journal groups read for as long as it is kept, it goes to a 0600 file instead and
 * only the file's path is printed and logged.
 */
function printWelcome(appliance: RunningAppliance, dataDir: string, log: Logger): void {
  // Display lines show a control character in a path as an escape; the commands below quote it.
  const shownDir = escapeForTerminal(dataDir);
  const lines = [
    '',
    `CT-Ops appliance is running. Agents connect to gRPC port ${appliance.grpcPort}; admin API on https port ${appliance.httpPort}.`,
    `CA certificate for agents: ${shownDir}/ca.crt  (SHA-256 ${appliance.tls.caFingerprint})`,
    `Bundle signing key:        ${shownDir}/bundle.pub  (minisign key id ${appliance.bundleKeyId})`,
    appliance.releaseKeyId
      ? appliance.releaseKeySource === 'development'
        ? `Trusted agent release key: ${escapeForTerminal(appliance.releaseKeyPath ?? '')} (minisign key id ${appliance.releaseKeyId}, DEVELOPMENT key, read again at each bundle build)`
        : `Trusted agent release key: ${escapeForTerminal(appliance.releaseKeyPath ?? '')} (minisign key id ${appliance.releaseKeyId})`
      : 'Trusted agent release key: none yet (set release_public_key_file; in a clone, `npm run build:agents` makes a development key that bundle builds use at once)',
  ];
  if (appliance.firstAdmin && isJournalStream(process.env, process.stderr.fd)) {
    const path = writeInitialPassword(dataDir, appliance.firstAdmin.password);
    log.info({ username: appliance.firstAdmin.username, path }, 'first admin created; its one-time password is in a file readable by the service account and root');
    lines.push(
      '',
      'First start: an admin was created.',
      `  username: ${appliance.firstAdmin.username}`,
      `  password file: ${escapeForTerminal(path)} (mode 0600; removed at the first login of ${appliance.firstAdmin.username})`,
      `The local admin CLI uses the credential in ${shownDir}/admin-cli.token (mode 0600).`,
    );
  } else if (appliance.firstAdmin) {
    lines.push(
      '',
      'First start: an admin was created. This one-time password is shown ONCE; the first login must change it.',
      `  username: ${appliance.firstAdmin.username}`,
      `  password: ${appliance.firstAdmin.password}`,
      `The local admin CLI uses the credential in ${shownDir}/admin-cli.token (mode 0600).`,
    );
  }
  // Commands that work as printed from where the appliance was started (a clone has no ct-ops-appliance on PATH).
  const admin = adminCommandPrefix(process.env, process.argv[1] ?? '', process.cwd());
  const dataDirFlag = `--data-dir ${shellWord(dataDir)}`;
  lines.push(
    '',
    'Next steps (in another terminal, from this directory):',
    `  ${admin} tokens create ${dataDirFlag}        # an enrolment token for agents`,
    `  ${admin} hosts list ${dataDirFlag}           # hosts and their status`,
    `  ${admin} hosts approve <host-id> ${dataDirFlag}`,
    '',
  );
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** A stop that takes longer (a stuck call, a hung disk) ends the process anyway, with exit 70. */
const SHUTDOWN_LIMIT_MS = 15_000;

/**
 * Resolves once SIGTERM or SIGINT has stopped the appliance gracefully: listeners closed, streams
 * ended, the vitals writer flushed, the database closed. A second signal changes nothing; a stop
 * past SHUTDOWN_LIMIT_MS exits 70 without waiting further.
 */
function waitForSignal(appliance: RunningAppliance): Promise<void> {
  return new Promise((resolve, reject) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      setTimeout(() => {
        process.stderr.write(`ct-ops-appliance: ERR_INTERNAL: the appliance did not stop within ${SHUTDOWN_LIMIT_MS} ms\n`);
        process.exit(ExitCode.SOFTWARE);
      }, SHUTDOWN_LIMIT_MS).unref();
      appliance.stop().then(resolve, (error: unknown) => reject(error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', 'shutdown failed', {}, { cause: error })));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
}
