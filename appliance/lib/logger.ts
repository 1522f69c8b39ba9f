import { pino, type Logger } from 'pino';

/**
 * The appliance's logger: one JSON event per line on stdout. Redaction is a safety
 * net; the code never passes secrets to the logger in the first place.
 */
export function createLogger(level: string): Logger {
  return pino({
    level,
    base: { component: 'appliance' },
    redact: {
      paths: ['token', 'jwt', 'password', 'org_token', 'secret', '*.token', '*.jwt', '*.password', '*.org_token', 'req.headers.authorization'],
      censor: '[redacted]',
    },
  });
}
