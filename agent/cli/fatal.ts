import { CtOpsError } from '../../common/errors.ts';
import type { AgentLogger } from '../log/logger.ts';

/**
 * Reports an error the agent cannot recover from: one structured log event (when a
 * logger exists yet) and one plain line on stderr for the admin. Returns the exit code.
 */
export function reportFatal(error: unknown, log: AgentLogger | undefined): number {
  const known = error instanceof CtOpsError ? error : new CtOpsError('ERR_INTERNAL', error instanceof Error ? error.message : String(error), {}, { cause: error });
  log?.fatal({ code: known.code, error: known.message, details: known.details, exit_code: known.exitCode }, 'agent stopped on a fatal error');
  process.stderr.write(`ct-ops-agent: ${known.code}: ${known.message}\n`);
  return known.exitCode;
}
