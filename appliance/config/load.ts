import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { readTomlConfigFile } from '../../common/config-file.ts';
import { checkValue, parseValue, type ValueOf, type ValueSpec } from '../../common/config-values.ts';
import { CtOpsError } from '../../common/errors.ts';
import { hostNameWarning, parseHostName } from '../../common/host-name.ts';
import { parseDatabaseSetting, type DatabaseLocation } from './database-url.ts';

/**
 * Every appliance setting: its TOML key, its CT_OPS_APPLIANCE_* variable (the key
 * upper-cased) and its default. Precedence: flag > environment > TOML file > default.
 */
const FIELDS = {
  data_dir: { spec: { kind: 'string' }, fallback: './data' },
  listen: { spec: { kind: 'string' }, fallback: '0.0.0.0' },
  grpc_port: { spec: { kind: 'integer', min: 0, max: 65535 }, fallback: 9443 },
  http_port: { spec: { kind: 'integer', min: 0, max: 65535 }, fallback: 8443 },
  /** The default also names this machine's host name, added when the configuration is loaded (machineSans). */
  sans: { spec: { kind: 'string-list' }, fallback: ['localhost', '127.0.0.1', '::1'] },
  jwt_ttl_secs: { spec: { kind: 'integer', min: 10, max: 30 * 86_400 }, fallback: 86_400 },
  pending_poll_secs: { spec: { kind: 'integer', min: 1, max: 3600 }, fallback: 30 },
  inventory_sweep_secs: { spec: { kind: 'integer', min: 1, max: 3600 }, fallback: 60 },
  vitals_retention_hours: { spec: { kind: 'integer', min: 1, max: 24 * 366 }, fallback: 24 * 7 },
  /** Days the audit log keeps an event (audit/service.ts prunes older ones hourly). */
  audit_retention_days: { spec: { kind: 'integer', min: 1, max: 100 * 366 }, fallback: 365 },
  /** Days a finished task is kept (TaskService.prune deletes older ones hourly); tasks/service.ts DEFAULT_TASK_RETENTION_MS is the same 90. */
  task_retention_days: { spec: { kind: 'integer', min: 1, max: 100 * 366 }, fallback: 90 },
  log_level: { spec: { kind: 'string' }, fallback: 'info' },
  release_public_key_file: { spec: { kind: 'string', allowEmpty: true }, fallback: '' },
  /** Empty: the SQLite file in data_dir; else a postgres:// URL (config/database-url.ts). */
  database: { spec: { kind: 'string', allowEmpty: true }, fallback: '' },
  /** PostgreSQL only: connections this process keeps at most (leave the server's max_connections room for every instance). */
  database_pool_size: { spec: { kind: 'integer', min: 1, max: 100 }, fallback: 10 },
  /** Agent release downloads served at once by this instance (appliance/http/agent-downloads.ts). */
  agent_download_concurrency: { spec: { kind: 'integer', min: 1, max: 1024 }, fallback: 16 },
  /** MiB per second all agent release downloads of this instance share. */
  agent_download_rate_mib: { spec: { kind: 'integer', min: 1, max: 100_000 }, fallback: 64 },
} as const satisfies Record<string, { spec: ValueSpec; fallback: unknown }>;

type FieldName = keyof typeof FIELDS;
/** Flags named otherwise than their setting: --san is given once per name. */
const FLAG_NAMES: Partial<Record<FieldName, string>> = { sans: '--san' };
type Settings = { [K in FieldName]: ValueOf<(typeof FIELDS)[K]['spec']> };

export interface ApplianceConfig {
  readonly dataDir: string;
  readonly listen: string;
  readonly grpcPort: number;
  readonly httpPort: number;
  /** Certificate names in their ASCII (IDNA) form, lower-case, no trailing dot; IP literals canonical (IPv6 compressed); each once. */
  readonly sans: readonly string[];
  readonly jwtTtlSecs: number;
  readonly pendingPollSecs: number;
  /** How often the SoftwareSweeper looks for online hosts due an inventory scan. */
  readonly inventorySweepSecs: number;
  readonly vitalsRetentionMs: number;
  /** Days an audit event is kept. */
  readonly auditRetentionDays: number;
  /** How long a finished task is kept (ms). */
  readonly taskRetentionMs: number;
  readonly logLevel: string;
  /** The agent release public key to trust (minisign format); empty: keep DATA_DIR/release.pub. */
  readonly releasePublicKeyFile: string;
  /** The SQLite file in dataDir, or a PostgreSQL server (its URL holds a password: log only `display`). */
  readonly database: DatabaseLocation;
  /** PostgreSQL: the most connections this process keeps open. */
  readonly databasePoolSize: number;
  /** How agent release downloads are served: at most `concurrent` at once, `bytesPerSecond` shared. */
  readonly agentDownloads: { readonly concurrent: number; readonly bytesPerSecond: number };
  /** What the start logs as configuration warnings: a SAN read as another name than written, this machine's host name left out of the default SANs. */
  readonly warnings: readonly string[];
}

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];
const ENV_PREFIX = 'CT_OPS_APPLIANCE_';

export interface ConfigSources {
  /** Path of an appliance TOML file (flag --config or CT_OPS_APPLIANCE_CONFIG). */
  file?: string | undefined;
  env: NodeJS.ProcessEnv;
  /** Flag values as given on the command line, keyed by setting name. */
  flags: Partial<Record<FieldName, string | string[]>>;
}

export function loadApplianceConfig(sources: ConfigSources): Readonly<ApplianceConfig> {
  const filePath = sources.file ?? sources.env[`${ENV_PREFIX}CONFIG`];
  const fileValues = filePath ? readTomlConfigFile(filePath, 'appliance') : {};
  for (const key of Object.keys(fileValues)) {
    if (!Object.hasOwn(FIELDS, key)) {
      throw new CtOpsError('ERR_CONFIG_INVALID', `${filePath}: unknown setting "${key}" (known: ${Object.keys(FIELDS).join(', ')})`, { where: filePath ?? null });
    }
  }
  const settings = {} as Record<FieldName, unknown>;
  /** Where the SANs came from (undefined: the default), named in errors and warnings about a name. */
  let sansWhere: string | undefined;
  let databaseWhere = 'database';
  for (const [name, field] of Object.entries(FIELDS) as [FieldName, (typeof FIELDS)[FieldName]][]) {
    const flag = sources.flags[name];
    const envName = `${ENV_PREFIX}${name.toUpperCase()}`;
    const envText = sources.env[envName];
    let where: string | undefined;
    if (flag !== undefined) {
      where = FLAG_NAMES[name] ?? `--${name.replaceAll('_', '-')}`;
      settings[name] = Array.isArray(flag) ? checkValue(field.spec, flag, where) : parseValue(field.spec, flag, where);
    } else if (envText !== undefined && envText !== '') {
      where = envName;
      settings[name] = parseValue(field.spec, envText, envName);
    } else if (Object.hasOwn(fileValues, name)) {
      where = `${filePath}: ${name}`;
      settings[name] = checkValue(field.spec, fileValues[name], where);
    } else {
      settings[name] = field.fallback;
    }
    if (name === 'sans') sansWhere = where;
    if (name === 'database' && where !== undefined) databaseWhere = where;
  }
  const values = settings as Settings;
  if (!LOG_LEVELS.includes(values.log_level)) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `log_level: expected one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(values.log_level)}`, { where: 'log_level' });
  }
  const warnings: string[] = [];
  const sans = values.sans.map((name) => sanName(name, sansWhere ?? 'the default sans', warnings));
  if (sansWhere === undefined) sans.push(...machineSans(warnings));
  return Object.freeze({
    dataDir: resolve(values.data_dir),
    listen: values.listen,
    grpcPort: values.grpc_port,
    httpPort: values.http_port,
    sans: Object.freeze([...new Set(sans)]),
    jwtTtlSecs: values.jwt_ttl_secs,
    pendingPollSecs: values.pending_poll_secs,
    inventorySweepSecs: values.inventory_sweep_secs,
    vitalsRetentionMs: values.vitals_retention_hours * 3_600_000,
    auditRetentionDays: values.audit_retention_days,
    taskRetentionMs: values.task_retention_days * 86_400_000,
    logLevel: values.log_level,
    releasePublicKeyFile: values.release_public_key_file,
    database: Object.freeze(parseDatabaseSetting(values.database, databaseWhere)),
    databasePoolSize: values.database_pool_size,
    agentDownloads: Object.freeze({ concurrent: values.agent_download_concurrency, bytesPerSecond: values.agent_download_rate_mib * 1024 * 1024 }),
    warnings: Object.freeze(warnings),
  });
}

/**
 * This machine's host name as a default SAN, when a certificate can carry it; otherwise
 * none, with a warning (agents reaching the appliance by that name would fail its TLS check).
 */
function machineSans(warnings: string[]): string[] {
  try {
    return [sanName(hostname(), "this machine's host name", warnings)];
  } catch (cause) {
    warnings.push(`the default sans leave out ${(cause as Error).message}; set sans (--san) to the names agents reach the appliance by`);
    return [];
  }
}

/** A SAN in its ASCII form; a name read as another than written adds a warning. Throws ERR_CONFIG_INVALID naming `where`. */
function sanName(text: string, where: string, warnings: string[]): string {
  const name = parseHostName(text, where);
  const readAs = hostNameWarning(name, where);
  if (readAs !== undefined) warnings.push(readAs);
  return name.ascii;
}
