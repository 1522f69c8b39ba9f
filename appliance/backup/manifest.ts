import { CtOpsError } from '../../common/errors.ts';

/**
 * The layout of a backup archive (a gzip'd tar, age-encrypted unless --unencrypted):
 *   manifest.json          this manifest, first
 *   data/<name>            the database copy (SQLite only) and every file of the data directory's top level
 *   config/<name>          the appliance TOML file, when the backup was given --config
 */
export const MANIFEST_MEMBER = 'manifest.json';
export const DATA_PREFIX = 'data/';
export const CONFIG_PREFIX = 'config/';
export const BACKUP_FORMAT = 'ct-ops-appliance-backup/1';

/** The first bytes of an age file (age-encryption.org/v1), and of a gzip stream (RFC 1952). */
export const AGE_MAGIC = Buffer.from('age-encryption.org/v1\n');
export const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);

/** A member name below data/ or config/: one plain file name, no path, no leading dot. */
const MEMBER_NAME = /^(?:data|config)\/[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface BackupMember {
  /** Path inside the archive (data/ca.key). */
  readonly name: string;
  readonly size: number;
  /** Lower-case hex SHA-256 of the content. */
  readonly sha256: string;
  /** Permission bits the file had (0o600 for secrets, 0o644 for certificates and public keys). */
  readonly mode: number;
}

/**
 * Where the backed-up appliance keeps its database. 'sqlite': data/appliance.db is in the archive.
 * 'postgres': the database is not (the server's own backups, pg_dump, keep it), nor the instance's own
 * server certificate and key: the archive holds what every ingest instance on that database shares
 * (CA, JWT, bundle and release keys, the admin CLI credential), and restoring it provisions an
 * instance — the one it came from after a disk loss, or a new one (docs/operations.md, PostgreSQL).
 */
export type BackupDatabase = 'sqlite' | 'postgres';

export interface BackupManifest {
  readonly format: typeof BACKUP_FORMAT;
  /** The appliance version that wrote the backup. */
  readonly product_version: string;
  /** Absent in backups of versions before PostgreSQL, which are all SQLite; parseManifest fills it in. */
  readonly database: BackupDatabase;
  /** PRAGMA user_version of the database copy; null when the database is PostgreSQL (not in the archive). */
  readonly schema_version: number | null;
  /** ISO 8601 UTC. */
  readonly created_at: string;
  readonly encrypted: boolean;
  readonly members: readonly BackupMember[];
}

export function isMemberName(name: string): boolean {
  return MEMBER_NAME.test(name);
}

/**
 * Parses manifest.json from a backup, `database` filled in ('sqlite') for a backup of an earlier
 * version. Throws ERR_BACKUP_DAMAGED for anything but a well-formed manifest of BACKUP_FORMAT, in
 * which a SQLite backup has a schema version and a PostgreSQL one has none.
 */
export function parseManifest(text: string): BackupManifest {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (cause) {
    throw new CtOpsError('ERR_BACKUP_DAMAGED', 'the backup manifest is not JSON', {}, { cause });
  }
  const manifest = value as Partial<BackupManifest> | null;
  const database = manifest?.database ?? 'sqlite';
  const wellFormed =
    manifest !== null &&
    typeof manifest === 'object' &&
    manifest.format === BACKUP_FORMAT &&
    typeof manifest.product_version === 'string' &&
    (database === 'sqlite' ? Number.isInteger(manifest.schema_version) : database === 'postgres' && manifest.schema_version === null) &&
    typeof manifest.created_at === 'string' &&
    typeof manifest.encrypted === 'boolean' &&
    Array.isArray(manifest.members) &&
    manifest.members.every(
      (member: Partial<BackupMember>) =>
        typeof member.name === 'string' && isMemberName(member.name) && Number.isSafeInteger(member.size) && typeof member.sha256 === 'string' && /^[0-9a-f]{64}$/.test(member.sha256) && Number.isInteger(member.mode),
    ) &&
    new Set(manifest.members.map((member) => member.name)).size === manifest.members.length;
  if (!wellFormed) throw new CtOpsError('ERR_BACKUP_DAMAGED', `the backup manifest is not a ${BACKUP_FORMAT} manifest`, { format: typeof manifest?.format === 'string' ? manifest.format : null });
  return { ...(manifest as BackupManifest), database };
}
