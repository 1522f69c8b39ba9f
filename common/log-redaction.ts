import type { Logger } from 'pino';

/**
 * Redaction for the appliance's and the agent's pino loggers: the one safety net for a log call that
 * passes a whole object (a config, TLS options, a request body, a CtOpsError with details and a
 * cause). The code never logs secrets on purpose; this catches what a future call passes by accident.
 *
 * It works on the class, not on a list of paths (decision 107): every event is walked to any depth
 * (arrays, `err.details.*`, `err.cause`, child bindings), and
 *   - a field whose name says it holds a secret is replaced by REDACTED, whatever its depth or case:
 *     its name, lowercased without `_`/`-`, is one of SECRET_NAMES or ends with one of SECRET_SUFFIXES
 *     (token, org_token, enrolmentToken, accessToken, api_key, keyPem, serverKeyPem, Authorization,
 *     proxy-authorization, database_url …);
 *   - in every string (messages of nested errors, stacks, URLs), a URL's `user:password@` loses its
 *     password, and a secret-named assignment (`org_token = "…"` in a TOML parser's code frame,
 *     `password: "…"`) loses its value.
 * Errors are serialised here (type, message, code, details, own stack, cause as one more error), so a
 * parser's error attached as `cause` is censored like the rest.
 */

/** What a redacted value is replaced with. */
export const REDACTED = '[redacted]';

/** Field names (normalised: lowercase, no `_` or `-`) redacted whole. */
const SECRET_NAMES = new Set(['key', 'seed', 'jwt', 'cookie', 'setcookie', 'database', 'credential', 'credentials', 'passphrase']);

/** Name endings (normalised) that mark a secret: orgtoken, tokensecret, serverkeypem, apikey, proxyauthorization … */
const SECRET_SUFFIXES = ['token', 'secret', 'secretkey', 'password', 'passphrase', 'privatekey', 'keypem', 'apikey', 'credential', 'authorization', 'cookie', 'databaseurl', 'connectionstring', 'jwt'] as const;

/** Field names the code is known to hold secrets under, for tests and readers (each matches the rules above). */
export const SECRET_FIELD_NAMES = [
  'token', 'org_token', 'orgToken', 'token_secret', 'tokenSecret', 'enrolmentToken', 'accessToken', 'adminApiToken',
  'secret', 'secretKey', 'secret_key', 'seed', 'api_key', 'apiKey',
  'private_key', 'privateKey', 'key', 'keyPem', 'serverKeyPem',
  'jwt',
  'password', 'newPassword', 'new_password', 'passphrase',
  'credential', 'cliToken', 'cli_token', 'sessionToken', 'session_token',
  'authorization', 'Authorization', 'proxy-authorization', 'cookie', 'set-cookie',
  'database', 'database_url', 'databaseUrl', 'connectionString',
] as const;

/** Deeper than any event the code logs; beyond it a value is replaced, not walked. */
const MAX_DEPTH = 12;

function normalised(name: string): string {
  return name.toLowerCase().replace(/[-_]/g, '');
}

/** True when a field of this name is redacted whole. */
function isSecretFieldName(name: string): boolean {
  const plain = normalised(name);
  return SECRET_NAMES.has(plain) || SECRET_SUFFIXES.some((suffix) => plain.endsWith(suffix));
}

/** `scheme://user:password@` → `scheme://user:[redacted]@`. */
const URL_PASSWORD = /(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@]*:)[^\s@/]*@/gi;
/**
 * `name = value` (TOML, env, config text: any value) or `name: "value"` / `"name": "value"` (a quoted
 * value only, so prose such as "the `authorization: Bearer` metadata" keeps its words) where the name
 * ends like a secret's; the value up to the line's or the quote's end.
 */
const SECRET_ASSIGNMENT = /(\b[A-Za-z0-9_-]*(?:token|secret|password|passphrase|private_?key|api_?key|key_?pem|authorization|database_?url|connection_?string)["']?\s*=\s*)("[^"\n]*"?|'[^'\n]*'?|[^\s,;}\]]+)|(\b[A-Za-z0-9_-]*(?:token|secret|password|passphrase|private_?key|api_?key|key_?pem|authorization|database_?url|connection_?string)["']?\s*:\s*)("[^"\n]*"?|'[^'\n]*'?)/gi;

/** A string with URL passwords and secret-named assignments censored. */
function redactText(text: string): string {
  return text.replace(URL_PASSWORD, `$1${REDACTED}@`).replace(SECRET_ASSIGNMENT, (_match, assigned?: string, _value?: string, named?: string) => `${assigned ?? named}${REDACTED}`);
}

/** An Error as a plain object (type, message, code, details, its own stack, cause), every part redacted. */
function errorObject(error: Error, depth: number, seen: WeakSet<object>): Record<string, unknown> {
  const { code, details, cause } = error as Error & { code?: unknown; details?: unknown; cause?: unknown };
  const plain: Record<string, unknown> = { type: error.name, message: redactText(error.message) };
  if (code !== undefined) plain.code = code;
  if (details !== undefined) plain.details = redactValue(details, depth + 1, seen);
  if (error.stack !== undefined) plain.stack = redactText(error.stack);
  if (cause !== undefined) plain.cause = redactValue(cause, depth + 1, seen);
  return plain;
}

function redactValue(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value === 'string') return redactText(value);
  if (value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value)) return `[${value.byteLength} bytes]`;
  if (depth >= MAX_DEPTH || seen.has(value)) return '[not logged]';
  seen.add(value);
  if (value instanceof Error) return errorObject(value, depth, seen);
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1, seen));
  if (value instanceof Date) return value;
  if (value instanceof Map) return redactValue(Object.fromEntries(value), depth, new WeakSet());
  const out: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) {
    out[name] = isSecretFieldName(name) && item !== undefined && item !== null ? REDACTED : redactValue(item, depth + 1, seen);
  }
  return out;
}

/** A log event (or a child's bindings) with every secret censored, for pino's `formatters.log`/`bindings`. */
function redactSecrets(event: Record<string, unknown>): Record<string, unknown> {
  return redactValue(event, 0, new WeakSet()) as Record<string, unknown>;
}

/**
 * The redaction options both loggers pass to pino. `formatters.log` redacts every event before pino
 * serialises it (pino hands `log.error(err)` over as `{ err }`, so errors pass there too). A child's
 * bindings (`log.child({...})`) are not events: see redactingChildBindings.
 */
export const REDACTING_LOGGER_OPTIONS = {
  formatters: { log: redactSecrets },
  // `err` is already a redacted plain object here; pino's own serializer would fold the cause into it again.
  serializers: { err: (value: unknown) => value },
};

/**
 * `logger`, whose children (and theirs) get their bindings redacted like an event, once when the
 * child is made. pino runs no formatter over a child's bindings (its `child` swaps
 * `formatters.bindings` for an identity function: pino lib/proto.js), and its `redact` paths, the
 * other way, cost every event a pass per path (38 names at two depths: more than half of the appliance's
 * logging time in bench:core, decision 133). Returns the same logger.
 */
export function redactingChildBindings<L extends Logger>(logger: L): L {
  const child = logger.child;
  logger.child = function redactedChild(this: L, bindings, options) {
    return child.call(this, redactSecrets(bindings), options);
  } as L['child'];
  return logger;
}
