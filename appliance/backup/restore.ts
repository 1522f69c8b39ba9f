import { createReadStream } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readdir, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { sha256File } from '../../bundler/lib/sha256sums.ts';
import { CtOpsError } from '../../common/errors.ts';
import { syncDirectory } from '../../common/sync-directory.ts';
import { CA_CERT_FILE, DATABASE_FILE } from '../lib/data-dir-files.ts';
import { certificateFingerprint } from '../pki/certificates.ts';
import { readIfExists } from '../pki/files.ts';
import { type CaRotationPhase, readCaRotation } from '../pki/rotation-file.ts';
import { assertDatabaseNotInUse, checkDatabaseCopy } from '../store/database-copy.ts';
import { lockDataDir } from '../lib/data-dir-lock.ts';
import { unpackPlainFiles } from '../lib/tar-files.ts';
import { backupReadError, decryptWithPassphrase } from './age.ts';
import { removeOnSignal, workDirectoryBeside, workDirectoryIn } from './work-directory.ts';
import { AGE_MAGIC, CONFIG_PREFIX, DATA_PREFIX, GZIP_MAGIC, isMemberName, MANIFEST_MEMBER, parseManifest, type BackupManifest } from './manifest.ts';

export interface RestoreRequest {
  /** The backup file. */
  readonly file: string;
  /** The data directory to restore into: absent, empty, or (with force) kept aside first. */
  readonly dataDir: string;
  /** Asked for only when the file is encrypted. */
  readonly passphrase: () => Promise<string>;
  readonly force: boolean;
  /** Accept a plain (gzip, unauthenticated) archive; without it only an age-encrypted one restores. */
  readonly unencrypted: boolean;
  /** Who the restored files belong to when run as root; default: the existing target directory's owner. */
  readonly owner?: { readonly uid: number; readonly gid: number } | undefined;
}

export interface RestoreResult {
  readonly dataDir: string;
  readonly manifest: BackupManifest;
  /** Where the data directory that was there before now is (--force on a non-empty one). */
  readonly keptAside: string | undefined;
  /** SHA-256 fingerprint (AA:BB:…) of the restored ca.crt, which agents must trust; undefined without one. */
  readonly caFingerprint: string | undefined;
  /**
   * The CA rotation phase the backup was taken in: anything but standby means agents may by now trust
   * only the next CA (docs/operations.md, Backup and restore).
   */
  readonly caRotationPhase: CaRotationPhase;
}

/**
 * Restores a backup into a data directory, all or nothing. Checks the target first (absent or
 * empty; a non-empty one only with force and only when no process has its database open
 * (assertDatabaseNotInUse), then moved aside to DATA_DIR.before-restore-<time>). A plain gzip
 * archive is refused unless `unencrypted` (nothing authenticates it: whoever swapped the file would
 * install their CA and keys), and so is a manifest whose `encrypted` disagrees with the format.
 * Then decrypts (age) and unpacks into a 0700 work directory beside it (removed on SIGINT/SIGTERM/
 * SIGHUP too), the manifest first (see unpack), checks every member
 * against the manifest (no member missing, none unlisted, each SHA-256), the database with PRAGMA
 * integrity_check and its schema against this build (a PostgreSQL appliance's backup holds none:
 * restored, it is an ingest instance's data directory without a server certificate), sets the
 * recorded modes (0600 secrets, 0644 public files, 0700 directory) and only then renames the work directory into place; when run as
 * root, the files get `owner`, else the owner of the directory that existed (the install's service
 * user); as root onto an absent one without `owner` it refuses (ERR_RESTORE_OWNER_REQUIRED). A newer schema than this build knows is refused; an older one is migrated by the next
 * start. Throws ERR_RESTORE_TARGET_NOT_EMPTY, ERR_BACKUP_PASSPHRASE_WRONG, ERR_BACKUP_DAMAGED,
 * ERR_SCHEMA_TOO_NEW, ERR_BACKUP_PASSPHRASE_REQUIRED, ERR_BACKUP_NOT_ENCRYPTED, ERR_BACKUP_UNREADABLE,
 * ERR_APPLIANCE_RUNNING, ERR_DATA_DIR_UNUSABLE; nothing is left written then. Every file, the work
 * directory and the parent after the rename are fsync'd.
 */
export async function restoreBackup(request: RestoreRequest): Promise<RestoreResult> {
  const dataDir = resolve(request.dataDir);
  const target = await targetState(dataDir);
  if (target.state === 'non-empty' && !request.force) {
    throw new CtOpsError('ERR_RESTORE_TARGET_NOT_EMPTY', `${dataDir} is not empty; restore into an absent or empty data directory, or give --force to keep the old one aside`, { path: dataDir });
  }
  const mountPoint = target.state !== 'absent' && target.mountPoint;
  if (mountPoint && target.state === 'non-empty') {
    throw new CtOpsError('ERR_RESTORE_TARGET_NOT_EMPTY', `${dataDir} is a mount point and not empty: it cannot be kept aside by a rename; move its content away yourself and restore into the empty volume`, { path: dataDir });
  }
  const runAsRoot = process.getuid?.() === 0;
  if (runAsRoot && target.state === 'absent' && request.owner === undefined) {
    throw new CtOpsError('ERR_RESTORE_OWNER_REQUIRED', `${dataDir} does not exist and restore runs as root: give --owner USER (the appliance's service user), or create the directory owned by that user first`, { path: dataDir });
  }
  const owner = request.owner ?? (target.state === 'absent' ? undefined : { uid: target.uid, gid: target.gid });
  // Held until the restored directory is in place: the appliance cannot start, nor a bundle build open the database, meanwhile.
  const lock = target.state === 'non-empty' ? lockDataDir(dataDir, 'restore') : undefined;
  try {
    if (lock !== undefined) assertDatabaseNotInUse(join(dataDir, DATABASE_FILE));
    return await restoreUnderLock(request, { dataDir, target, mountPoint, runAsRoot, owner });
  } finally {
    lock?.release();
  }
}

/** The restore itself, once the target is checked (and locked when it held a data directory). */
async function restoreUnderLock(
  request: RestoreRequest,
  { dataDir, target, mountPoint, runAsRoot, owner }: { dataDir: string; target: TargetState; mountPoint: boolean; runAsRoot: boolean; owner: RestoreRequest['owner'] },
): Promise<RestoreResult> {
  const kind = await archiveKind(request.file);
  if (kind === 'gzip' && !request.unencrypted) {
    throw new CtOpsError('ERR_BACKUP_NOT_ENCRYPTED', `${request.file} is a plain archive, not an encrypted backup: nothing proves who wrote it. Restore it only if you made it yourself and kept it safe, with --unencrypted`, { path: request.file });
  }
  // On a mount point the work directory goes inside the volume, so its files can be renamed into place.
  const work = mountPoint ? workDirectoryIn(dataDir, 'ct-ops', 'restore') : workDirectoryBeside(dataDir);
  const stopCleanup = removeOnSignal(new Set([work]));
  try {
    const cipher = createReadStream(request.file);
    const archive = kind === 'age' ? await decryptWithPassphrase(cipher, await request.passphrase()) : cipher;
    const listed = await unpack(archive, work);
    if (listed.encrypted !== (kind === 'age')) {
      throw new CtOpsError('ERR_BACKUP_NOT_ENCRYPTED', `the backup's manifest says encrypted=${listed.encrypted} but the file is ${kind === 'age' ? 'age-encrypted' : 'a plain archive'}: it was altered`, { path: request.file });
    }
    const manifest = await checkedManifest(work, listed);
    const restored = join(work, DATA_PREFIX);
    await chmod(restored, 0o700);
    for (const member of manifest.members) await chmod(join(work, member.name), member.mode & 0o644);
    syncDirectory(restored);
    const keptAside = mountPoint ? await moveIntoVolume(restored, dataDir, runAsRoot ? owner : undefined) : await putInPlace(restored, dataDir, target, runAsRoot ? owner : undefined);
    const caPem = readIfExists(join(dataDir, CA_CERT_FILE));
    return { dataDir, manifest, keptAside, caFingerprint: caPem === undefined ? undefined : certificateFingerprint(caPem), caRotationPhase: readCaRotation(dataDir).phase };
  } finally {
    await rm(work, { recursive: true, force: true });
    stopCleanup();
  }
}

/** mountPoint: the directory is a volume's root (its st_dev differs from its parent's): it cannot be removed or renamed. */
type TargetState = { state: 'absent' } | { state: 'empty' | 'non-empty'; uid: number; gid: number; mountPoint: boolean };

async function targetState(dataDir: string): Promise<TargetState> {
  try {
    const info = await stat(dataDir);
    if (!info.isDirectory()) throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${dataDir} is not a directory`, { path: dataDir });
    const mountPoint = info.dev !== (await stat(dirname(dataDir))).dev;
    return { state: (await readdir(dataDir)).length === 0 ? 'empty' : 'non-empty', uid: info.uid, gid: info.gid, mountPoint };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'absent' };
    if (error instanceof CtOpsError) throw error;
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot read ${dataDir}`, { path: dataDir }, { cause: error });
  }
}

/** age (encrypted) or gzip (--unencrypted) by the first bytes; anything else is not a backup. Throws ERR_BACKUP_DAMAGED, ERR_BACKUP_UNREADABLE. */
async function archiveKind(file: string): Promise<'age' | 'gzip'> {
  const head = Buffer.alloc(AGE_MAGIC.length);
  let length: number;
  try {
    const handle = await open(file, 'r');
    try {
      ({ bytesRead: length } = await handle.read(head, 0, head.length, 0));
    } finally {
      await handle.close();
    }
  } catch (cause) {
    throw new CtOpsError('ERR_BACKUP_UNREADABLE', `cannot read the backup ${file}`, { path: file }, { cause });
  }
  if (length === AGE_MAGIC.length && head.equals(AGE_MAGIC)) return 'age';
  if (length >= GZIP_MAGIC.length && head.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return 'gzip';
  throw new CtOpsError('ERR_BACKUP_DAMAGED', `${file} is not a CT-Ops backup (neither an age file nor a gzip'd tar)`, { path: file });
}

/** The most bytes a manifest may have: a few hundred per member, and a backup has a few dozen members. */
const MANIFEST_MAX_BYTES = 1024 * 1024;

/**
 * Unpacks the gzip'd tar into `work`, writing each entry itself, and returns the manifest. The
 * manifest must be the first entry (at most MANIFEST_MAX_BYTES); it is parsed before anything else
 * is written, and every later entry must be a plain file it lists, once, with the listed size in its
 * header: an archive cannot make restore write more than the manifest announced (a small gzip of
 * a huge unlisted member is refused at its header). Files are created new (0600 until the modes
 * are set) and fsync'd when closed. Resolves once every file is written and closed, and on a
 * failure only after the writes in flight have stopped, so the caller can remove `work` without a
 * late write re-creating it. Throws ERR_BACKUP_DAMAGED for any other entry, a missing, late or
 * oversized manifest, or a broken stream, or the age error (ERR_BACKUP_DAMAGED) for an altered body.
 */
async function unpack(archive: Readable, work: string): Promise<BackupManifest> {
  await mkdir(join(work, DATA_PREFIX), { mode: 0o700 });
  await mkdir(join(work, CONFIG_PREFIX), { mode: 0o700 });
  const seen = new Set<string>();
  let manifest: BackupManifest | undefined;
  let listed = new Map<string, number>();
  await unpackPlainFiles(archive, work, {
    admit: (entry) => {
      const name = entry.path;
      if (seen.size === 0) {
        if (name !== MANIFEST_MEMBER || entry.type !== 'File' || (entry.size ?? 0) > MANIFEST_MAX_BYTES) return { refuse: `the first entry must be ${MANIFEST_MEMBER} of at most ${MANIFEST_MAX_BYTES} bytes` };
        seen.add(name);
        return {
          collect: (content) => {
            manifest = parseManifest(content.toString('utf8'));
            listed = new Map(manifest.members.map((member) => [member.name, member.size]));
          },
        };
      }
      if (manifest === undefined) return { refuse: `it comes before ${MANIFEST_MEMBER} was read` };
      if (entry.type !== 'File' || seen.has(name) || !isMemberName(name)) return { refuse: 'not a plain member file, or a repeated one' };
      if (listed.get(name) !== entry.size) return { refuse: `the manifest ${listed.has(name) ? `lists ${listed.get(name)} bytes, the header says ${entry.size}` : 'does not list it'}` };
      seen.add(name);
      return { write: name };
    },
    refusal: (entry, why) => new CtOpsError('ERR_BACKUP_DAMAGED', `the backup holds an entry no backup has: ${entry.path} (${entry.type}): ${why}`, { entry: entry.path }),
    readError: backupReadError,
  });
  if (manifest === undefined) throw new CtOpsError('ERR_BACKUP_DAMAGED', `the backup has no ${MANIFEST_MEMBER}`, {});
  return manifest;
}

/**
 * The manifest, once every file unpacked matches it: the same names (none missing, none unlisted),
 * sizes and SHA-256; the database among them, passing its integrity check with the manifest's schema
 * — or, for an appliance on PostgreSQL, no database among them.
 */
async function checkedManifest(work: string, manifest: BackupManifest): Promise<BackupManifest> {
  const listed = new Map(manifest.members.map((member) => [member.name, member]));
  const present = await unpackedFiles(work);
  const unlisted = present.filter((name) => !listed.has(name));
  const missing = [...listed.keys()].filter((name) => !present.includes(name));
  if (unlisted.length > 0 || missing.length > 0) {
    throw new CtOpsError('ERR_BACKUP_DAMAGED', `the backup does not match its manifest (missing: ${missing.join(', ') || 'none'}; unlisted: ${unlisted.join(', ') || 'none'})`, { missing: missing.length, unlisted: unlisted.length });
  }
  for (const member of manifest.members) {
    const path = join(work, member.name);
    if ((await lstat(path)).size !== member.size || (await sha256File(path)) !== member.sha256) {
      throw new CtOpsError('ERR_BACKUP_DAMAGED', `${member.name} does not match the SHA-256 in the backup manifest`, { member: member.name });
    }
  }
  const databaseMember = `${DATA_PREFIX}${DATABASE_FILE}`;
  if (manifest.database === 'postgres') {
    // Its database is on the PostgreSQL server: a SQLite file in it would be served by nothing, or by mistake.
    if (listed.has(databaseMember)) throw new CtOpsError('ERR_BACKUP_DAMAGED', `the backup of an appliance on PostgreSQL holds a ${databaseMember}`, {});
    return manifest;
  }
  if (!listed.has(databaseMember)) throw new CtOpsError('ERR_BACKUP_DAMAGED', `the backup holds no ${databaseMember}`, {});
  const { schemaVersion } = checkDatabaseCopy(join(work, databaseMember));
  if (schemaVersion !== manifest.schema_version) {
    throw new CtOpsError('ERR_BACKUP_DAMAGED', `the database has schema ${schemaVersion}, the manifest says ${manifest.schema_version}`, {});
  }
  return manifest;
}

/** Every file below data/ and config/ of the work directory, as member names. */
async function unpackedFiles(work: string): Promise<string[]> {
  const names: string[] = [];
  for (const prefix of [DATA_PREFIX, CONFIG_PREFIX]) {
    const dir = join(work, prefix);
    const entries = await readdir(dir).catch(() => [] as string[]);
    names.push(...entries.map((name) => `${prefix}${name}`));
  }
  return names;
}

/**
 * Renames the checked data directory into place: a former empty directory is removed, a non-empty
 * one renamed to DATA_DIR.before-restore-<UTC time> (and renamed back if the last step fails).
 * Returns where the old one went, if anywhere.
 */
async function putInPlace(restored: string, dataDir: string, target: TargetState, owner: { uid: number; gid: number } | undefined): Promise<string | undefined> {
  await chownAll(restored, owner);
  let keptAside: string | undefined;
  try {
    if (target.state === 'empty') await rmdir(dataDir);
    if (target.state === 'non-empty') {
      keptAside = `${dataDir}.before-restore-${new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
      await rename(dataDir, keptAside);
    }
    await rename(restored, dataDir);
    syncDirectory(dirname(dataDir));
    return keptAside;
  } catch (cause) {
    if (keptAside !== undefined) await rename(keptAside, dataDir).catch(() => undefined);
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot put the restored data directory in place at ${dataDir}`, { path: dataDir }, { cause });
  }
}

/**
 * The mount-point case of putInPlace: the empty volume root stays, the checked files are renamed
 * into it one by one from the work directory inside it (same volume), then it gets mode 0700 and the
 * owner. A failure part way removes the files already moved, so the volume is empty again. Returns
 * undefined (nothing was kept aside). Throws ERR_DATA_DIR_UNUSABLE.
 */
async function moveIntoVolume(restored: string, dataDir: string, owner: { uid: number; gid: number } | undefined): Promise<undefined> {
  const moved: string[] = [];
  try {
    await chownAll(restored, owner);
    for (const name of await readdir(restored)) {
      await rename(join(restored, name), join(dataDir, name));
      moved.push(name);
    }
    await chmod(dataDir, 0o700);
    if (owner !== undefined) await chown(dataDir, owner.uid, owner.gid);
    syncDirectory(dataDir);
    return undefined;
  } catch (cause) {
    for (const name of moved) await rm(join(dataDir, name), { force: true });
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot move the restored files into the volume ${dataDir}`, { path: dataDir }, { cause });
  }
}

/** Gives `dir` and the files in it to `owner` (restore run as root); nothing when undefined. */
async function chownAll(dir: string, owner: { uid: number; gid: number } | undefined): Promise<void> {
  if (owner === undefined) return;
  await chown(dir, owner.uid, owner.gid);
  for (const name of await readdir(dir)) await chown(join(dir, name), owner.uid, owner.gid);
}
