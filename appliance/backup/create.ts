import { closeSync, constants, existsSync, openSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { chmod, copyFile, lstat, mkdir, open, readdir, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create as createTar } from 'tar';
import { sha256File } from '../../bundler/lib/sha256sums.ts';
import { CtOpsError } from '../../common/errors.ts';
import { syncDirectory } from '../../common/sync-directory.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { CA_CERT_FILE, DATABASE_FILE, ENDPOINT_FILE, INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { LOCK_FILE, LOCK_HOLDER_FILE } from '../lib/data-dir-lock.ts';
import { SERVER_CERT_FILE, SERVER_KEY_FILE } from '../pki/certificates.ts';
import { checkDatabaseCopy, copyLiveDatabase } from '../store/database-copy.ts';
import { encryptWithPassphrase } from './age.ts';
import { removeOnSignal, workDirectoryIn } from './work-directory.ts';
import { BACKUP_FORMAT, CONFIG_PREFIX, DATA_PREFIX, isMemberName, MANIFEST_MEMBER, type BackupDatabase, type BackupManifest, type BackupMember } from './manifest.ts';

export interface BackupRequest {
  /** The appliance's data directory (absolute). */
  readonly dataDir: string;
  /** Where the appliance keeps its database (its `database` setting): 'postgres' archives the data directory's shared keys and CA only. */
  readonly database: BackupDatabase;
  /** The appliance TOML file to include, if any. */
  readonly configFile?: string | undefined;
  /** Where to write the backup; must not exist. */
  readonly out: string;
  /** The age passphrase; undefined writes the archive unencrypted (the CLI warns). */
  readonly passphrase: string | undefined;
  /** Told each step as it starts (one line of text, no secrets), for a terminal's progress display. */
  readonly onStep?: (step: string) => void;
}

export interface BackupResult {
  readonly out: string;
  readonly encrypted: boolean;
  readonly bytes: number;
  /** null for a PostgreSQL appliance's backup (no database in it). */
  readonly schemaVersion: number | null;
  readonly members: readonly BackupMember[];
  /** Entries of the data directory left out: runtime files, directories (bundles/), odd names. */
  readonly leftOut: readonly string[];
}

/**
 * Data-directory entries that are state of the running process, not of the appliance: the database
 * travels as its online-backup copy. The first admin's one-time password file is a hand-over, not
 * state: a backup must not carry a live password to wherever backups go.
 */
const RUNTIME_FILES = new Set([DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`, `${DATABASE_FILE}-journal`, ENDPOINT_FILE, INITIAL_PASSWORD_FILE, LOCK_FILE, `${LOCK_FILE}-journal`, LOCK_HOLDER_FILE]);
/**
 * What one ingest instance on PostgreSQL has for itself alone: its server certificate names its own
 * SANs. Left out of its backup, so the restored instance issues its own from the shared CA at start.
 */
const INSTANCE_FILES = new Set([SERVER_CERT_FILE, SERVER_KEY_FILE]);
/** The name the appliance TOML file has inside the archive, whatever it was called. */
const CONFIG_MEMBER = `${CONFIG_PREFIX}appliance.toml`;

/**
 * Writes a backup of a (possibly serving) appliance: the database through SQLite's online backup
 * API (copyLiveDatabase; checked with PRAGMA integrity_check), every file of the data directory's
 * top level (CA, server and JWT keys, bundle key, release.pub, the CLI credential), the config file
 * when given, and a manifest with each member's SHA-256 — a gzip'd tar, age-encrypted to the
 * passphrase unless it is undefined. On PostgreSQL (request.database) there is no database copy and
 * no server certificate or key (INSTANCE_FILES): the archive provisions an ingest instance. The
 * output is created new (mode 0600, never replacing a file, no link(): FAT/exFAT sticks have none),
 * fsync'd with its directory, and removed on any failure.
 * The plain copies (database, keys) are staged only in a 0700 work directory INSIDE the data
 * directory (workDirectoryIn), never beside the output; it is removed either way, and SIGINT,
 * SIGTERM or SIGHUP remove it and the partial output before exiting 128+n (removeOnSignal).
 * Throws ERR_BACKUP_OUTPUT_EXISTS, ERR_BACKUP_OUTPUT_UNWRITABLE, ERR_DATA_DIR_UNUSABLE (no database there, or on PostgreSQL no ca.crt; unreadable files),
 * ERR_CONFIG_UNREADABLE, ERR_STORAGE_CORRUPT (the copy fails its integrity check), ERR_STORAGE_*.
 */
export async function createBackup(request: BackupRequest): Promise<BackupResult> {
  const out = resolve(request.out);
  const databasePath = join(request.dataDir, DATABASE_FILE);
  const onPostgres = request.database === 'postgres';
  // The file every data directory of its kind has: the SQLite database, or the CA an instance on PostgreSQL made at its first start.
  const expected = onPostgres ? CA_CERT_FILE : DATABASE_FILE;
  if (!existsSync(join(request.dataDir, expected))) {
    const hint = onPostgres ? '' : ' (an appliance on PostgreSQL: give backup its database setting as serve has it, --config or CT_OPS_APPLIANCE_DATABASE)';
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${request.dataDir} holds no ${expected}: is it the appliance's data directory?${hint}`, { path: request.dataDir });
  }
  // Created first: an unwritable medium fails before any copy is made. Created synchronously and
  // registered for removal in the same tick, so no signal handler runs between the two (an awaited
  // open left a gap in which a SIGINT left the partial output behind); the same holds for the work
  // directory below.
  createOutput(out);
  const cleanup = new Set([out]);
  const stopCleanup = removeOnSignal(cleanup);
  let output: FileHandle | undefined;
  let written = false;
  let work: string | undefined;
  try {
    output = await openOutput(out);
    work = workDirectoryIn(request.dataDir, 'ct-ops', 'backup');
    cleanup.add(work);
    const step = request.onStep ?? (() => undefined);
    await mkdir(join(work, DATA_PREFIX), { mode: 0o700 });
    let schemaVersion: number | null = null;
    if (!onPostgres) {
      step(`copying the database (${(await lstat(databasePath)).size} bytes) with SQLite's online backup`);
      await copyLiveDatabase(databasePath, join(work, DATA_PREFIX, DATABASE_FILE));
      step('checking the copy (PRAGMA integrity_check)');
      ({ schemaVersion } = checkedCopy(join(work, DATA_PREFIX, DATABASE_FILE)));
    }
    const workEntry = `${basename(work)}/`;
    const notCopied = onPostgres ? new Set([...RUNTIME_FILES, ...INSTANCE_FILES]) : RUNTIME_FILES;
    const leftOut = (await copyDataFiles(request.dataDir, join(work, DATA_PREFIX), notCopied)).filter((name) => name !== workEntry);
    if (request.configFile !== undefined) await copyConfig(request.configFile, work);
    const members = await describeMembers(work, request.configFile !== undefined);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      product_version: PRODUCT_VERSION,
      database: request.database,
      schema_version: schemaVersion,
      created_at: new Date().toISOString(),
      encrypted: request.passphrase !== undefined,
      members,
    };
    await writeFile(join(work, MANIFEST_MEMBER), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    step(`writing ${out}${request.passphrase === undefined ? '' : ' (age: deriving the key from the passphrase first)'}`);
    const names = [MANIFEST_MEMBER, ...members.map((member) => member.name)];
    const tarStream = Readable.from(createTar({ cwd: work, gzip: true, portable: true }, names));
    const archive = request.passphrase === undefined ? tarStream : await encryptWithPassphrase(tarStream, request.passphrase);
    const bytes = await writeOutput(output, out, archive);
    written = true;
    return { out, encrypted: manifest.encrypted, bytes, schemaVersion, members, leftOut };
  } finally {
    if (work !== undefined) await rm(work, { recursive: true, force: true });
    if (!written) {
      await output?.close().catch(() => undefined);
      await rm(out, { force: true });
    }
    stopCleanup();
  }
}

/** The copy's schema version; a copy that fails its check means the live database is damaged. */
function checkedCopy(path: string): { schemaVersion: number } {
  try {
    return checkDatabaseCopy(path);
  } catch (error) {
    if (error instanceof CtOpsError && error.code === 'ERR_BACKUP_DAMAGED') {
      throw new CtOpsError('ERR_STORAGE_CORRUPT', `the appliance database is damaged (${error.message}); no backup was written`, {}, { cause: error });
    }
    throw error;
  }
}

/** Copies every regular file of the data directory's top level but those in `notCopied`, with its mode; returns what it left out for other reasons (directories, odd names). */
async function copyDataFiles(dataDir: string, target: string, notCopied: ReadonlySet<string>): Promise<string[]> {
  const leftOut: string[] = [];
  for (const name of (await readdir(dataDir)).sort()) {
    const source = join(dataDir, name);
    const stat = await lstat(source);
    if (notCopied.has(name)) continue;
    if (!stat.isFile() || name.endsWith('.tmp') || !isMemberName(`${DATA_PREFIX}${name}`)) {
      leftOut.push(stat.isDirectory() ? `${name}/` : name);
      continue;
    }
    try {
      await copyFile(source, join(target, name), constants.COPYFILE_EXCL);
      await chmod(join(target, name), stat.mode & 0o777);
    } catch (cause) {
      throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot read ${source}`, { path: source }, { cause });
    }
  }
  return leftOut;
}

async function copyConfig(configFile: string, work: string): Promise<void> {
  try {
    await mkdir(join(work, CONFIG_PREFIX), { mode: 0o700 });
    await copyFile(configFile, join(work, CONFIG_MEMBER));
    await chmod(join(work, CONFIG_MEMBER), (await lstat(configFile)).mode & 0o777);
  } catch (cause) {
    throw new CtOpsError('ERR_CONFIG_UNREADABLE', `cannot read the config file ${configFile}`, { path: configFile }, { cause });
  }
}

/** Size, SHA-256 and mode of every member below the work directory, data/ first, sorted. */
async function describeMembers(work: string, withConfig: boolean): Promise<BackupMember[]> {
  const names = [...(await readdir(join(work, DATA_PREFIX))).sort().map((name) => `${DATA_PREFIX}${name}`), ...(withConfig ? [CONFIG_MEMBER] : [])];
  return Promise.all(
    names.map(async (name) => {
      const stat = await lstat(join(work, name));
      return { name, size: stat.size, sha256: await sha256File(join(work, name)), mode: stat.mode & 0o777 };
    }),
  );
}

/**
 * Creates the backup file new (O_CREAT|O_EXCL, 0600): never replaces a file there, and needs no
 * hard link, which FAT/exFAT lack. Throws ERR_BACKUP_OUTPUT_EXISTS, ERR_BACKUP_OUTPUT_UNWRITABLE.
 */
function createOutput(path: string): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code === 'EEXIST') throw new CtOpsError('ERR_BACKUP_OUTPUT_EXISTS', `${path} already exists; backup never overwrites a file`, { path }, { cause });
    throw new CtOpsError('ERR_BACKUP_OUTPUT_UNWRITABLE', `cannot create ${path}`, { path }, { cause });
  }
}

/** Opens the output createOutput made, for writing. Throws ERR_BACKUP_OUTPUT_UNWRITABLE. */
async function openOutput(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r+');
  } catch (cause) {
    throw new CtOpsError('ERR_BACKUP_OUTPUT_UNWRITABLE', `cannot open ${path}`, { path }, { cause });
  }
}

/**
 * Streams `content` into the output, fsyncs it and its directory, and closes it. Returns the bytes
 * written. Throws ERR_BACKUP_OUTPUT_UNWRITABLE (our own errors from `content` pass through); the
 * caller removes the file then.
 */
async function writeOutput(output: FileHandle, path: string, content: Readable): Promise<number> {
  try {
    // The stream owns the handle from here: it fsyncs (flush) and closes it when the content has ended.
    await pipeline(content, output.createWriteStream({ flush: true }));
    syncDirectory(dirname(path));
    return (await lstat(path)).size;
  } catch (error) {
    if (error instanceof CtOpsError) throw error;
    throw new CtOpsError('ERR_BACKUP_OUTPUT_UNWRITABLE', `cannot write ${path}`, { path }, { cause: error });
  }
}
