import { hostname } from 'node:os';
import pino, { type DestinationStream, type Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { REDACTING_LOGGER_OPTIONS, redactingChildBindings } from '../../common/log-redaction.ts';

export type AgentLogger = Logger;

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The level named by CT_OPS_LOG_LEVEL (default info); anything else is a config error. */
export function logLevelFromEnv(env: NodeJS.ProcessEnv): string {
  const level = (env.CT_OPS_LOG_LEVEL ?? '').trim().toLowerCase() || 'info';
  if (!LEVELS.includes(level)) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `CT_OPS_LOG_LEVEL: expected one of ${LEVELS.join(', ')}, got ${JSON.stringify(env.CT_OPS_LOG_LEVEL)}`, { where: 'CT_OPS_LOG_LEVEL' });
  }
  return level;
}

/**
 * One JSON event per line on stdout (or `destination` in tests), level as a word.
 * Writes are synchronous: the agent logs little, and a fatal exit must not lose the
 * line that explains it. Secret fields are redacted (common/log-redaction.ts). The hostname is read for every line, not once at start (pino's
 * default), so a host renamed while the agent runs logs under its new name.
 */
export function createLogger(level: string, destination: DestinationStream = pino.destination({ fd: 1, sync: true })): AgentLogger {
  return redactingChildBindings(pino(
    {
      level,
      name: 'ct-ops-agent',
      base: { pid: process.pid },
      mixin: () => ({ hostname: hostname() }),
      serializers: REDACTING_LOGGER_OPTIONS.serializers,
      formatters: { ...REDACTING_LOGGER_OPTIONS.formatters, level: (label: string) => ({ level: label }) },
    },
    destination,
  ));
}
