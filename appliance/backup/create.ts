import { constants, createWriteStream, existsSync } from 'node:fs';
import { chmod, copyFile, link, lstat, mkdir, open, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { create as createTar } from 'tar';
import { sha256File } from '../../bundler/lib/sha256sums.ts';
import { CtOpsError } from '../../common/errors.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { DATABASE_FILE, ENDPOINT_FILE, INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { checkDatabaseCopy, copyLiveDatabase } from '../store/database-copy.ts';
import { encryptWithPassphrase } from './age.ts';
import { workDirectoryBeside } from './work-directory.ts';
import { BACKUP_FORMAT, CONFIG_PREFIX, DATA_PREFIX, isMemberName, MANIFEST_MEMBER, type BackupManifest, type BackupMember } from './manifest.ts';

export interface BackupRequest {
  /** The appliance's data directory (absolute). */
  readonly dataDir: string;
  /** The appliance TOML file to include, if any. */
  readonly configFile?: string | undefined;
  /** Where to write the backup; must not exist. */
  readonly out: string;
  /** The age passphrase; undefined writes the archive unencrypted (the CLI warns). */
  readonly passphrase: string | undefined;
}

export interface BackupResult {
  readonly out: string;
  readonly encrypted: boolean;
  readonly bytes: number;
  readonly schemaVersion: number;
  readonly members: readonly BackupMember[];
  /** Entries of the data directory left out: runtime files, directories (bundles/), odd names. */
  readonly leftOut: readonly string[];
}

/**
 * Data-directory entries that are state of the running process, not of the appliance: the database
 * travels as its online-backup copy. The first admin's one-time password file is a hand-over, not
 * state: a backup must not carry a live password to wherever backups go.
 */
const RUNTIME_FILES = new Set([DATABASE_FILE, `${DATABASE_FILE}-wal`, `${DATABASE_FILE}-shm`, `${DATABASE_FILE}-journal`, ENDPOINT_FILE, INITIAL_PASSWORD_FILE]);
/** The name the appliance TOML file has inside the archive, whatever it was called. */
const CONFIG_MEMBER = `${CONFIG_PREFIX}appliance.toml`;

/**
 * Writes a backup of a (possibly serving) appliance: the database through SQLite's online backup
 * API (copyLiveDatabase; checked with PRAGMA integrity_check), every file of the data directory's
 * top level (CA, server and JWT keys, bundle key, release.pub, the CLI credential), the config file
 * when given, and a manifest with each member's SHA-256 — a gzip'd tar, age-encrypted to the
 * passphrase unless it is undefined. The output appears atomically, mode 0600, and never replaces
 * an existing file. Work files live in a 0700 directory beside the output (workDirectoryBeside)
 * and are removed either way.
 * Throws ERR_BACKUP_OUTPUT_EXISTS, ERR_DATA_DIR_UNUSABLE (no database there, unreadable files),
 * ERR_CONFIG_UNREADABLE, ERR_STORAGE_CORRUPT (the copy fails its integrity check), ERR_STORAGE_*.
 */
export async function createBackup(request: BackupRequest): Promise<BackupResult> {
  const out = resolve(request.out);
  if (existsSync(out)) throw new CtOpsError('ERR_BACKUP_OUTPUT_EXISTS', `${out} already exists; backup never overwrites a file`, { path: out });
  const databasePath = join(request.dataDir, DATABASE_FILE);
  if (!existsSync(databasePath)) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${request.dataDir} holds no ${DATABASE_FILE}: is it the appliance's data directory?`, { path: request.dataDir });
  }
  const work = await workDirectoryBeside(out, 'backup');
  try {
    await mkdir(join(work, DATA_PREFIX), { mode: 0o700 });
    await copyLiveDatabase(databasePath, join(work, DATA_PREFIX, DATABASE_FILE));
    const { schemaVersion } = checkedCopy(join(work, DATA_PREFIX, DATABASE_FILE));
    const leftOut = await copyDataFiles(request.dataDir, join(work, DATA_PREFIX));
    if (request.configFile !== undefined) await copyConfig(request.configFile, work);
    const members = await describeMembers(work, request.configFile !== undefined);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      product_version: PRODUCT_VERSION,
      schema_version: schemaVersion,
      created_at: new Date().toISOString(),
      encrypted: request.passphrase !== undefined,
      members,
    };
    await writeFile(join(work, MANIFEST_MEMBER), `${JSON.stringify(manifest, null, 2)}\n`, { mode: 0o600 });
    const names = [MANIFEST_MEMBER, ...members.map((member) => member.name)];
    const tarStream = Readable.from(createTar({ cwd: work, gzip: true, portable: true }, names));
    const archive = request.passphrase === undefined ? tarStream : await encryptWithPassphrase(tarStream, request.passphrase);
    const bytes = await writeNewFile(out, archive);
    return { out, encrypted: manifest.encrypted, bytes, schemaVersion, members, leftOut };
  } finally {
    await rm(work, { recursive: true, force: true });
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

/** Copies every regular file of the data directory's top level but the runtime ones, with its mode; returns what it left out. */
async function copyDataFiles(dataDir: string, target: string): Promise<string[]> {
  const leftOut: string[] = [];
  for (const name of (await readdir(dataDir)).sort()) {
    const source = join(dataDir, name);
    const stat = await lstat(source);
    if (RUNTIME_FILES.has(name)) continue;
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
 * Streams `content` into `path` without ever replacing a file there: a 0600 temp file beside it,
 * fsync'd, then hard-linked to the final name (link fails if the name exists, unlike rename).
 * Returns the bytes written. Throws ERR_BACKUP_OUTPUT_EXISTS, or ERR_DATA_DIR_UNUSABLE when the
 * output cannot be written.
 */
async function writeNewFile(path: string, content: Readable): Promise<number> {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  try {
    await pipeline(content, createWriteStream(temp, { flags: 'wx', mode: 0o600 }));
    const handle = await open(temp, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    const { size } = await stat(temp);
    await link(temp, path).catch((cause: NodeJS.ErrnoException) => {
      if (cause.code === 'EEXIST') throw new CtOpsError('ERR_BACKUP_OUTPUT_EXISTS', `${path} appeared while the backup was written; it was left alone`, { path }, { cause });
      throw cause;
    });
    return size;
  } catch (error) {
    if (error instanceof CtOpsError) throw error;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot write ${path}`, { path }, { cause: error });
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}
