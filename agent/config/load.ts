import { dirname, isAbsolute, resolve } from 'node:path';
import { readTomlConfigFile } from '../../common/config-file.ts';
import { checkValue, parseValue, type ValueOf, type ValueSpec } from '../../common/config-values.ts';
import { CtOpsError } from '../../common/errors.ts';
import { hostNameWarning } from '../../common/host-name.ts';
import { idPattern } from '../../common/ids.ts';
import { parsePublicKeyFile, type PublicKey } from '../../common/minisign.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { parseIngestAddressList, type IngestAddress } from './address.ts';
import { readCaCertificate } from './ca-cert.ts';
import type { AgentConfig, LoadedConfig } from './types.ts';

export const DEFAULT_CONFIG_FILE = '/etc/ct-ops/agent.toml';
export const DEFAULT_DATA_DIR = '/var/lib/ct-ops/agent';
export const DEFAULT_HEARTBEAT_INTERVAL_SECS = 30;

const BUNDLE_ID = idPattern('bnd');

interface KeySpec {
  readonly spec: ValueSpec;
  /** The environment variable that overrides the key (the spec's table). */
  readonly env?: string;
}

/** The spec's keys, per table. Anything else in the file is warned about and ignored. */
const TABLES = {
  ingest: {
    address: { spec: { kind: 'string' }, env: 'CT_OPS_INGEST_ADDRESS' },
    // Several appliance instances behind one CA (issue 11); the environment variable overrides it too, with one address.
    addresses: { spec: { kind: 'string-list' } },
    ca_cert_file: { spec: { kind: 'string', allowEmpty: true }, env: 'CT_OPS_INGEST_CA_CERT' },
  },
  agent: {
    org_token: { spec: { kind: 'string', allowEmpty: true }, env: 'CT_OPS_ORG_TOKEN' },
    data_dir: { spec: { kind: 'string' }, env: 'CT_OPS_DATA_DIR' },
    version: { spec: { kind: 'string', allowEmpty: true } },
    heartbeat_interval_secs: { spec: { kind: 'integer', min: 5, max: 3600 } },
    tags: { spec: { kind: 'string-map' } },
    // Written by the bundler: the bundle this agent was installed from, sent at enrolment.
    install_bundle_id: { spec: { kind: 'string', allowEmpty: true } },
  },
  update: {
    // The minisign public key of agent releases, written by the bundler; self-update verifies with it.
    release_public_key: { spec: { kind: 'string', allowEmpty: true } },
  },
} as const satisfies Record<string, Record<string, KeySpec>>;

type TableName = keyof typeof TABLES;

export interface ConfigSources {
  readonly file: string;
  readonly env: NodeJS.ProcessEnv;
}

/**
 * Reads, validates and freezes the agent configuration. Precedence: environment
 * variable (when set and non-empty) > TOML file > default. Relative paths in the file
 * are resolved against the file's directory (a bundle ships ca.crt beside agent.toml);
 * relative paths in the environment against the working directory.
 */
export function loadAgentConfig(sources: ConfigSources): LoadedConfig {
  const file = resolve(sources.file);
  const document = readTomlConfigFile(file, 'agent');
  const warnings: string[] = [];
  const value = <T extends TableName, K extends keyof (typeof TABLES)[T] & string>(table: T, key: K) => {
    const entry = TABLES[table][key] as KeySpec;
    const envName = entry.env;
    const envText = envName === undefined ? undefined : sources.env[envName];
    if (envName !== undefined && envText !== undefined && envText !== '') {
      return { value: parseValue(entry.spec, envText, envName), base: process.cwd() };
    }
    const section = tableOf(document, table, file);
    if (section !== undefined && Object.hasOwn(section, key)) {
      return { value: checkValue(entry.spec, section[key], `${file}: [${table}] ${key}`), base: dirname(file) };
    }
    return undefined;
  };
  warnings.push(...unknownKeys(document, file));

  const addresses = ingestAddresses(
    { single: value('ingest', 'address')?.value as string | undefined, list: value('ingest', 'addresses')?.value as string[] | undefined, table: tableOf(document, 'ingest', file) },
    file,
    sources.env,
    warnings,
  );

  const caValue = value('ingest', 'ca_cert_file');
  const caText = (caValue?.value as string | undefined)?.trim() ?? '';
  const caWhere = sources.env.CT_OPS_INGEST_CA_CERT ? 'CT_OPS_INGEST_CA_CERT' : `${file}: [ingest] ca_cert_file`;
  const caCertFile = caText === '' || caValue === undefined ? undefined : absolute(caText, caValue.base);
  const caPem = caCertFile === undefined ? undefined : readCaCertificate(caCertFile, caWhere);

  const dataDirValue = value('agent', 'data_dir');
  const dataDir = dataDirValue === undefined ? DEFAULT_DATA_DIR : absolute(dataDirValue.value as string, dataDirValue.base);
  const configuredVersion = value('agent', 'version')?.value as string | undefined;
  if (configuredVersion && configuredVersion !== PRODUCT_VERSION) {
    warnings.push(`${file}: [agent] version is ${JSON.stringify(configuredVersion)} but this agent is ${PRODUCT_VERSION}; reporting ${PRODUCT_VERSION}`);
  }

  const releaseKeyText = ((value('update', 'release_public_key')?.value as string | undefined) ?? '').trim();
  let releaseKey: PublicKey | undefined;
  try {
    releaseKey = releaseKeyText === '' ? undefined : parsePublicKeyFile(releaseKeyText);
  } catch (cause) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${file}: [update] release_public_key is not a minisign public key`, { where: 'update.release_public_key' }, { cause });
  }

  const installBundleId = ((value('agent', 'install_bundle_id')?.value as string | undefined) ?? '').trim();
  if (installBundleId !== '' && !BUNDLE_ID.test(installBundleId)) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${file}: [agent] install_bundle_id ${JSON.stringify(installBundleId)} is not a bundle id (bnd_ and 20 lower-case hex digits)`, { where: 'agent.install_bundle_id' });
  }

  const config: AgentConfig = {
    configFile: file,
    ingest: Object.freeze({ addresses, caCertFile, caPem }),
    orgToken: ((value('agent', 'org_token')?.value as string | undefined) ?? '').trim(),
    dataDir,
    configuredVersion: configuredVersion || undefined,
    heartbeatIntervalSecs: (value('agent', 'heartbeat_interval_secs')?.value as number | undefined) ?? DEFAULT_HEARTBEAT_INTERVAL_SECS,
    tags: Object.freeze({ ...((value('agent', 'tags')?.value as ValueOf<{ kind: 'string-map' }> | undefined) ?? {}) }),
    installBundleId,
    releaseKey,
  };
  return Object.freeze({ config: Object.freeze(config), warnings: Object.freeze(warnings) });
}

/**
 * The ingest addresses in the order the agent tries them: CT_OPS_INGEST_ADDRESS (one) when set, else
 * [ingest] address (one) or [ingest] addresses (1..MAX_INGEST_ADDRESSES, no target twice). Both keys
 * in the file, neither, a bad entry (named by its index) or a repeated one: ERR_CONFIG_INVALID. A
 * name read as another (hostNameWarning) is added to `warnings`.
 */
function ingestAddresses(
  given: { single: string | undefined; list: readonly string[] | undefined; table: Record<string, unknown> | undefined },
  file: string,
  env: NodeJS.ProcessEnv,
  warnings: string[],
): readonly IngestAddress[] {
  if (given.table !== undefined && Object.hasOwn(given.table, 'address') && Object.hasOwn(given.table, 'addresses')) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${file}: [ingest] address and [ingest] addresses are both set; keep one (address for one ingest address, addresses for several)`, { where: `${file}: [ingest] addresses` });
  }
  let entries: { text: string; where: string }[];
  if (given.single !== undefined) {
    // CT_OPS_INGEST_ADDRESS arrives here as the single address: it overrides either key.
    entries = [{ text: given.single, where: env.CT_OPS_INGEST_ADDRESS ? 'CT_OPS_INGEST_ADDRESS' : `${file}: [ingest] address` }];
  } else if (given.list !== undefined) {
    entries = given.list.map((text, index) => ({ text, where: `${file}: [ingest] addresses[${index}]` }));
  } else {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${file}: [ingest] address is required (host:port), or [ingest] addresses (a list of them), or set CT_OPS_INGEST_ADDRESS`, { where: `${file}: [ingest] address` });
  }
  const addresses = parseIngestAddressList(entries, `${file}: [ingest] addresses`);
  addresses.forEach((address, index) => {
    const readAs = hostNameWarning(address.name, entries[index]!.where);
    if (readAs !== undefined) warnings.push(readAs);
  });
  return Object.freeze(addresses);
}

function absolute(path: string, base: string): string {
  return isAbsolute(path) ? path : resolve(base, path);
}

function tableOf(document: Record<string, unknown>, table: TableName, file: string): Record<string, unknown> | undefined {
  const section = document[table];
  if (section === undefined) return undefined;
  if (typeof section !== 'object' || section === null || Array.isArray(section) || section instanceof Date) {
    throw new CtOpsError('ERR_CONFIG_INVALID', `${file}: [${table}] must be a table`, { where: `${file}: ${table}` });
  }
  return section as Record<string, unknown>;
}

function unknownKeys(document: Record<string, unknown>, file: string): string[] {
  const found: string[] = [];
  for (const [name, section] of Object.entries(document)) {
    if (!Object.hasOwn(TABLES, name)) {
      found.push(`${file}: unknown key "${name}" ignored (known tables: ${Object.keys(TABLES).join(', ')})`);
      continue;
    }
    if (typeof section !== 'object' || section === null) continue;
    const known = TABLES[name as TableName];
    for (const key of Object.keys(section)) {
      if (!Object.hasOwn(known, key)) found.push(`${file}: unknown key "[${name}] ${key}" ignored (known: ${Object.keys(known).join(', ')})`);
    }
  }
  return found;
}
