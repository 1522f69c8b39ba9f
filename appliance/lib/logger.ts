import { pino, type DestinationStream, type Logger } from 'pino';
import { REDACTING_LOGGER_OPTIONS, redactingChildBindings } from '../../common/log-redaction.ts';

/**
 * The appliance's logger: one JSON event per line on stdout. Redaction is a safety
 * net (one list with the agent, common/log-redaction.ts); the code never passes secrets to the
 * logger in the first place. `destination` is for tests (default: stdout).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, base: { component: 'appliance' }, ...REDACTING_LOGGER_OPTIONS };
  return redactingChildBindings(destination === undefined ? pino(options) : pino(options, destination));
}
