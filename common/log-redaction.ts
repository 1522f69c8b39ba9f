/**
 * The one list of field names that may carry a secret, for the appliance's and the agent's pino
 * loggers. The code never logs these fields; redaction is the safety net for a future log call that
 * passes a whole object (a config, a request body, a credential). Each name is redacted as a field of
 * the event and as a field one level down (`*.name`), which is as deep as pino's wildcard goes
 * without a measurable cost per line.
 *
 * Sources of the names: enrolment tokens (`token`, `org_token`, the bundle API's `token_secret`), the
 * agent's JWT and key material (`jwt`, `secretKey`, `seed`, `private_key`), admin credentials
 * (`password`, `credential`, session and CLI tokens), backup passphrases, HTTP headers
 * (`authorization`, `cookie`, `set-cookie`), and a PostgreSQL URL that may embed its password
 * (`database_url`, `databaseUrl`, `connectionString`).
 */
export const SECRET_FIELD_NAMES = [
  'token', 'org_token', 'orgToken', 'token_secret', 'tokenSecret',
  'secret', 'secretKey', 'secret_key', 'seed',
  'private_key', 'privateKey',
  'jwt',
  'password', 'newPassword', 'new_password', 'passphrase',
  'credential', 'cliToken', 'cli_token', 'sessionToken', 'session_token',
  'authorization', 'cookie', 'set-cookie',
  'database_url', 'databaseUrl', 'connectionString',
] as const;

/** A name pino's path syntax accepts after a dot; others (`set-cookie`) need brackets. */
const PLAIN_NAME = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** The HTTP headers among them, also redacted inside a logged request's or response's headers. */
const SECRET_HEADERS = ['authorization', 'cookie', 'set-cookie'] as const;

function member(name: string): string {
  return PLAIN_NAME.test(name) ? `.${name}` : `["${name}"]`;
}

/** pino `redact.paths` for the names above: each at the top level and one level down, headers in req/res. */
export const REDACT_PATHS: readonly string[] = [
  ...SECRET_FIELD_NAMES.flatMap((name) => [PLAIN_NAME.test(name) ? name : member(name), `*${member(name)}`]),
  ...SECRET_HEADERS.flatMap((name) => [`req.headers${member(name)}`, `res.headers${member(name)}`]),
];

/** What a redacted value is replaced with. */
export const REDACTED = '[redacted]';
