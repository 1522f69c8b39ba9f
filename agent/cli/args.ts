import { Command, CommanderError, Option } from 'commander';
import { CtOpsError, isErrorCode, STATUS } from '../../common/errors.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { DEFAULT_CONFIG_FILE } from '../config/load.ts';
import { MESSAGE_LIMIT_CHARS } from '../tasks/runner.ts';
import { UNINSTALL_TASK_ID } from '../tasks/uninstall.ts';
import type { TaskReport } from './report-task.ts';

export interface CliOptions {
  readonly configFile: string;
  /** -check: validate, test the connection, exit. */
  readonly check: boolean;
}

/** What the CLI asks for: run with these options, report a task, or exit (help and version were printed). */
export type CliRequest =
  | { readonly kind: 'run'; readonly options: CliOptions }
  | { readonly kind: 'report-task'; readonly configFile: string; readonly report: TaskReport }
  | { readonly kind: 'update-watch'; readonly configFile: string; readonly detach: boolean }
  | { readonly kind: 'exit'; readonly exitCode: number };

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
  ${STATUS.ERR_TASK_NOT_FOUND.exit}  report-task: this agent never received that task
  ${STATUS.ERR_INGEST_UNREACHABLE.exit}  -check, report-task: the ingest address cannot be reached
  ${STATUS.ERR_DATA_DIR_UNUSABLE.exit}  data_dir cannot be created or holds a damaged key file
  ${STATUS.ERR_AGENT_REVOKED.exit}  an admin revoked or rejected this host, or deleted it and retired its key
      (do not restart)
  ${STATUS.ERR_CONFIG_INVALID.exit}  configuration invalid or unreadable, enrolment token refused,
      or the ingest certificate is not trusted by ca_cert_file

Reporting a handed-off task (the uninstaller runs this after it removed the agent):
  ct-ops-agent -config FILE report-task --task-id tsk_... --outcome succeeded|failed
      [--error-code ERR_...] [--message TEXT]

Installing a staged self-update on Windows (the agent runs this from its kept previous
executable; exit 0 updated, 1 refused, 2 rolled back):
  ct-ops-agent.previous.exe -config FILE update-watch

Environment:
  CT_OPS_INGEST_ADDRESS, CT_OPS_INGEST_CA_CERT, CT_OPS_ORG_TOKEN, CT_OPS_DATA_DIR
      override [ingest] address, [ingest] ca_cert_file, [agent] org_token, [agent] data_dir
  CT_OPS_LOG_LEVEL      trace, debug, info (default), warn, error, fatal or silent
  CT_OPS_MACHINE_ID_FILE  read the Linux machine id from this file instead of /etc/machine-id
  CT_OPS_HELPER_REQUESTS_DIR  the root helper's request spool (default /var/lib/ct-ops/requests,
      macOS /Library/Application Support/CT-Ops/requests)
  CT_OPS_UNINSTALLER    the uninstaller a root agent starts itself (default
      /usr/local/libexec/ct-ops/uninstall.sh, Windows %ProgramFiles%\\CT-Ops\\uninstall.ps1)`;

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
  let report: TaskReport | undefined;
  program
    .command('report-task')
    .description('report how a task this agent handed off ended (the uninstaller runs this), then exit')
    .requiredOption('--task-id <id>', 'the task, as the agent received it (tsk_...)')
    .addOption(new Option('--outcome <outcome>', 'how it ended').choices(['succeeded', 'failed']).makeOptionMandatory())
    .option('--error-code <code>', 'with --outcome failed: an error code from the catalogue (docs/errors.md)')
    .option('--message <text>', 'what happened, for the admin', '')
    .action(({ taskId, outcome, errorCode, message }: { taskId: string; outcome: TaskReport['outcome']; errorCode?: string; message: string }, command: Command) => {
      if (!UNINSTALL_TASK_ID.test(taskId)) command.error(`error: --task-id ${JSON.stringify(taskId)} is not a task id (tsk_ and 20 hex digits)`);
      if (errorCode !== undefined && !(isErrorCode(errorCode) && outcome === 'failed')) {
        command.error('error: --error-code must be a catalogue code (ERR_...) and goes with --outcome failed');
      }
      report = { taskId, outcome, errorCode: isErrorCode(errorCode) ? errorCode : undefined, message: message.slice(0, MESSAGE_LIMIT_CHARS) };
    });
  let watch: { detach: boolean } | undefined;
  program
    .command('update-watch')
    .description('Windows: install the agent update staged in the request spool and watch the new agent, rolling back when it fails (the agent starts this from its kept previous executable), then exit')
    .option('--detach', 'start the watcher again outside this process tree and exit at once')
    .action(({ detach }: { detach?: boolean }) => {
      watch = { detach: detach === true };
    });
  // Without an action of its own, a program with a subcommand would show help instead of running.
  program.action(() => undefined);
  try {
    program.parse(normaliseArgs(argv), { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      return { kind: 'exit', exitCode: error.exitCode === 0 ? 0 : new CtOpsError('ERR_USAGE', error.message).exitCode };
    }
    throw error;
  }
  const options = program.opts<{ config: string; check?: boolean }>();
  if (report !== undefined) return { kind: 'report-task', configFile: options.config, report };
  if (watch !== undefined) return { kind: 'update-watch', configFile: options.config, detach: watch.detach };
  return { kind: 'run', options: { configFile: options.config, check: options.check === true } };
}
