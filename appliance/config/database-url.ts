import { CtOpsError } from '../../common/errors.ts';

/**
 * Where the appliance keeps its store: the embedded SQLite file DATA_DIR/appliance.db (the default,
 * `database` unset or empty), or a PostgreSQL 15 server. `display` is the URL with its password
 * replaced, the only form that may be logged or printed.
 */
export type DatabaseLocation =
  | { readonly kind: 'sqlite' }
  | { readonly kind: 'postgres'; readonly url: string; readonly display: string };

const POSTGRES_SCHEMES = ['postgres:', 'postgresql:'];

/**
 * The `database` setting (flag --database, CT_OPS_APPLIANCE_DATABASE, TOML `database`): empty for
 * SQLite, else postgres://USER:PASSWORD@HOST:PORT/DATABASE (or postgresql://; query parameters such
 * as sslmode=verify-full pass to the driver). Throws ERR_CONFIG_INVALID naming `where`; the message
 * never repeats the text, which may hold a password.
 */
export function parseDatabaseSetting(text: string, where: string): DatabaseLocation {
  if (text === '') return { kind: 'sqlite' };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: not a URL; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE, or nothing for the SQLite file in data_dir`, { where });
  }
  if (!POSTGRES_SCHEMES.includes(url.protocol)) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: the scheme ${JSON.stringify(url.protocol)} is not a database this appliance speaks; expected postgres:// (or postgresql://), or nothing for the SQLite file in data_dir`, { where });
  }
  if (url.hostname === '' || url.pathname.length <= 1) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${where}: a PostgreSQL URL names its host and database: postgres://USER:PASSWORD@HOST:PORT/DATABASE (got ${redactedDatabaseUrl(url)})`, { where });
  }
  return { kind: 'postgres', url: text, display: redactedDatabaseUrl(url) };
}

/** Query parameters pg reads as secrets (postgres://…?password=…, ?sslpassword=…): masked like the userinfo password. */
const SECRET_QUERY_PARAMETERS = ['password', 'sslpassword'];

/**
 * The URL with a password, if any, shown as *** — in the userinfo or as a query parameter (the user
 * name stays: it says which role connects).
 */
function redactedDatabaseUrl(url: URL): string {
  const shown = new URL(url.href);
  if (shown.password !== '') shown.password = '***';
  for (const name of SECRET_QUERY_PARAMETERS) {
    if (shown.searchParams.has(name)) shown.searchParams.set(name, '***');
  }
  return shown.href;
}
