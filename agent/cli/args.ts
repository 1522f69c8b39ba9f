import { Command, CommanderError } from 'commander';
import { CtOpsError, STATUS } from '../../common/errors.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { DEFAULT_CONFIG_FILE } from '../config/load.ts';

export interface CliOptions {
  readonly configFile: string;
  /** -check: validate, test the connection, exit. */
  readonly check: boolean;
}

/** What the CLI asks for: run with these options, or exit (help and version were printed). */
export type CliRequest = { readonly kind: 'run'; readonly options: CliOptions } | { readonly kind: 'exit'; readonly exitCode: number };

/**
 * The spec's service unit runs `ct-ops-agent -config /etc/ct-ops/agent.toml` (a Go-style
 * single-dash long flag); commander only knows `--config`, so single-dash words gain a dash.
 */
export function normaliseArgs(argv: readonly string[]): string[] {
  const end = argv.indexOf('--');
  return argv.map((arg, index) => ((end === -1 || index < end) && /^-[A-Za-z][A-Za-z0-9-]+(=.*)?$/.test(arg) ? `-${arg}` : arg));
}

const EXIT_CODES_HELP = `
Exit codes:
  0   stopped by SIGTERM/SIGINT, or -check passed
  ${STATUS.ERR_USAGE.exit}  bad command-line arguments
  ${STATUS.ERR_INGEST_UNREACHABLE.exit}  -check: the ingest address cannot be reached
  ${STATUS.ERR_DATA_DIR_UNUSABLE.exit}  data_dir cannot be created or holds a damaged key file
  ${STATUS.ERR_AGENT_REVOKED.exit}  an admin revoked or rejected this host (do not restart)
  ${STATUS.ERR_CONFIG_INVALID.exit}  configuration invalid or unreadable, enrolment token refused,
      or the ingest certificate is not trusted by ca_cert_file

Environment:
  CT_OPS_INGEST_ADDRESS, CT_OPS_INGEST_CA_CERT, CT_OPS_ORG_TOKEN, CT_OPS_DATA_DIR
      override [ingest] address, [ingest] ca_cert_file, [agent] org_token, [agent] data_dir
  CT_OPS_LOG_LEVEL      trace, debug, info (default), warn, error, fatal or silent
  CT_OPS_MACHINE_ID_FILE  read the Linux machine id from this file instead of /etc/machine-id`;

export function parseCli(argv: readonly string[], write: { out: (text: string) => void; err: (text: string) => void }): CliRequest {
  const program = new Command('ct-ops-agent')
    .description('CT-Ops host agent: enrols this host with the CT-Ops appliance and streams its heartbeat.')
    .option('--config <path>', 'agent configuration file (TOML)', DEFAULT_CONFIG_FILE)
    .option('--check', 'validate the configuration, load or create the identity, test the TLS connection to ingest, then exit')
    .version(PRODUCT_VERSION, '--version', 'print the agent version')
    .helpOption('-h, --help', 'show this help')
    .addHelpText('after', EXIT_CODES_HELP)
    .configureOutput({ writeOut: write.out, writeErr: write.err })
    .exitOverride()
    .allowExcessArguments(false);
  try {
    program.parse(normaliseArgs(argv), { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      return { kind: 'exit', exitCode: error.exitCode === 0 ? 0 : new CtOpsError('ERR_USAGE', error.message).exitCode };
    }
    throw error;
  }
  const options = program.opts<{ config: string; check?: boolean }>();
  return { kind: 'run', options: { configFile: options.config, check: options.check === true } };
}
