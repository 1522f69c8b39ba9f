import { lstat, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { ReadEntry } from 'tar';
import { CtOpsError } from '../../common/errors.ts';
import { parsePublicKeyFile, type PublicKey } from '../../common/minisign.ts';
import { syncDirectory } from '../../common/sync-directory.ts';
import { unpackPlainFiles } from '../lib/tar-files.ts';
import type { AgentRelease } from '../model/release.ts';
import { readReleasePublicKey } from '../pki/signing-keys.ts';
import type { Stores } from '../store/index.ts';
import { checkRelease, isReleaseFileName, type CheckedRelease } from './release-check.ts';
import { MAX_RELEASE_FILE_BYTES } from '../../common/release-version.ts';
import { compareVersions } from '../../common/release-version.ts';

/** The folder of DATA_DIR holding one folder per imported release version. */
export const RELEASES_DIR = 'releases';

/** The most entries a release archive may have: six executables, WinSW, the two signature files, release.pub and a top folder. */
const MAX_ARCHIVE_ENTRIES = 16;

export interface ReleaseServiceDeps {
  readonly stores: Stores;
  readonly dataDir: string;
  readonly log: Logger;
  /**
   * The release keys an import must be signed by; default: the appliance's release.pub, read again
   * at each import as bundle builds read it (appliance/pki/signing-keys.ts readReleasePublicKey).
   */
  readonly trustedKeys?: () => readonly PublicKey[];
  /** Told after a release was retired (RolloutService reloads its offers: a retired release is offered no more). */
  readonly retired?: () => Promise<void>;
}

export interface ImportOptions {
  /** Accept a version older than the newest imported one. */
  readonly allowOlder: boolean;
  /** Who imported it (the admin's name), recorded with the release. */
  readonly importedBy: string;
}

/** What an import did: `imported` false when that version was already imported with the same files (an import is idempotent). */
export interface ImportOutcome {
  readonly release: AgentRelease;
  readonly imported: boolean;
}

/**
 * Owns the agent releases the appliance can hand out for self-update (issue 12): imported from the
 * media a security team carries in, checked against the trusted release key before anything of them
 * is kept, listed, retired. Files live in DATA_DIR/releases/<version>/, the catalogue in the store
 * (agent_releases). On PostgreSQL with several instances each instance keeps its own files: importing
 * the same release on another instance finds the catalogue row and puts the files in place there.
 */
export class ReleaseService {
  readonly #deps: ReleaseServiceDeps;
  /** Imports run one at a time in this process: each decides on the catalogue and the folders it saw. */
  #importing: Promise<unknown> = Promise.resolve();

  constructor(deps: ReleaseServiceDeps) {
    this.#deps = deps;
  }

  /** Removes the staging folders of imports a crash or a kill cut short (at start, before any import). */
  async removeLeftStaging(): Promise<void> {
    const releasesDir = join(this.#deps.dataDir, RELEASES_DIR);
    const names = await readdir(releasesDir).catch(() => [] as string[]);
    for (const name of names.filter((entry) => entry.startsWith('.incoming-'))) await rm(join(releasesDir, name), { recursive: true, force: true });
  }

  /** The folder of `version`'s files (which may not exist on this instance). */
  folderOf(version: string): string {
    return join(this.#deps.dataDir, RELEASES_DIR, version);
  }

  /** Whether this instance has every file of `release` in its folder, at its recorded size: it can serve it. */
  isHere(release: AgentRelease): Promise<boolean> {
    return holdsFiles(this.folderOf(release.version), release);
  }

  /**
   * Imports the agent release in the tar stream `archive` (gzip'd or not; the files of one release
   * folder as `npm run build:agents` writes it, at the top or in one top folder; release.pub is read
   * past, never trusted). Unpacked into a private folder, checked (release-check.ts checkRelease),
   * then compared with the catalogue: the same version with the same files is kept as it is
   * (`imported` false, its files put in place on this instance if missing); with other files,
   * ERR_RELEASE_CONFLICT; older than the newest imported one (retired ones included),
   * ERR_RELEASE_OLDER unless `allowOlder`. Nothing of a refused archive is kept. Throws
   * ERR_RELEASE_INVALID, ERR_RELEASE_UNTRUSTED, ERR_RELEASE_CONFLICT, ERR_RELEASE_OLDER,
   * ERR_DATA_DIR_UNUSABLE (the files cannot be written).
   */
  importArchive(archive: Readable, options: ImportOptions, now: number): Promise<ImportOutcome> {
    const run = this.#importing.then(() => this.#import(archive, options, now));
    this.#importing = run.catch(() => undefined);
    return run;
  }

  async #import(archive: Readable, options: ImportOptions, now: number): Promise<ImportOutcome> {
    const releasesDir = join(this.#deps.dataDir, RELEASES_DIR);
    await mkdir(releasesDir, { recursive: true, mode: 0o755 });
    const staging = await mkdtemp(join(releasesDir, '.incoming-'));
    try {
      await unpackPlainFiles(archive, staging, releaseArchiveRules());
      const checked = await checkRelease(staging, this.#trustedKeys());
      const known = await this.#deps.stores.releases.get(checked.version);
      if (known !== undefined) {
        if (!sameFiles(known, checked)) throw conflict(known);
        await this.#putInPlace(staging, known.version);
        return { release: known, imported: false };
      }
      const newest = await this.#deps.stores.releases.newest({ includeRetired: true });
      if (newest !== undefined && compareVersions(checked.version, newest.version) < 0 && !options.allowOlder) {
        throw new CtOpsError('ERR_RELEASE_OLDER', `agent release ${checked.version} is older than ${newest.version}, already imported; give --allow-older to import it anyway`, { version: checked.version, newest: newest.version });
      }
      await this.#putInPlace(staging, checked.version);
      const release: AgentRelease = { ...checked, importedAt: now, importedBy: options.importedBy, retiredAt: null };
      if (!(await this.#deps.stores.releases.insert(release))) {
        // Another instance recorded the version since the lookup: the same files, or a conflict whose files must not stay here.
        const recorded = (await this.#deps.stores.releases.get(checked.version))!;
        if (!sameFiles(recorded, checked)) {
          await rm(this.folderOf(checked.version), { recursive: true, force: true });
          throw conflict(recorded);
        }
        return { release: recorded, imported: false };
      }
      this.#deps.log.info({ version: release.version, key_id: release.keyId, files: release.files.length, imported_by: release.importedBy }, 'agent release imported');
      return { release, imported: true };
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }

  /** Every imported release, newest version first. */
  list(): Promise<AgentRelease[]> {
    return this.#deps.stores.releases.list();
  }

  /** The release `version`; ERR_RELEASE_NOT_FOUND when none was imported. */
  async get(version: string): Promise<AgentRelease> {
    const release = await this.#deps.stores.releases.get(version);
    if (release === undefined) throw notFound(version);
    return release;
  }

  /**
   * Retires `version`: it is no longer offered to agents; its files and catalogue row are kept (the
   * record of what was imported, and hosts that run it). Retiring a retired release changes nothing.
   * ERR_RELEASE_NOT_FOUND when none was imported.
   */
  async retire(version: string, now: number): Promise<AgentRelease> {
    if (await this.#deps.stores.releases.retire(version, now)) {
      this.#deps.log.info({ version }, 'agent release retired');
      await this.#deps.retired?.();
    }
    return this.get(version);
  }

  #trustedKeys(): readonly PublicKey[] {
    if (this.#deps.trustedKeys) return this.#deps.trustedKeys();
    const found = readReleasePublicKey(this.#deps.dataDir);
    if (found === undefined) return [];
    try {
      return [parsePublicKeyFile(found.text)];
    } catch (cause) {
      throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${found.path} is not a minisign public key`, { path: found.path }, { cause });
    }
  }

  /**
   * Makes the checked files in `staging` the folder of `version` unless this instance already has it
   * complete: a folder left by an import that failed before its catalogue row is replaced.
   */
  async #putInPlace(staging: string, version: string): Promise<void> {
    const folder = this.folderOf(version);
    const release = await this.#deps.stores.releases.get(version);
    if (release !== undefined && (await holdsFiles(folder, release))) return;
    await rm(folder, { recursive: true, force: true });
    await rename(staging, folder);
    await syncDirectory(join(this.#deps.dataDir, RELEASES_DIR));
  }
}

/**
 * What an uploaded release archive may hold: at most MAX_ARCHIVE_ENTRIES entries, each a regular
 * file named as a release file (release-check.ts), at the top or under one top folder, at most
 * MAX_RELEASE_FILE_BYTES, once; the top folder's own entry and release.pub are read past. Anything
 * else (a link, a nested path, "..", another name) is refused at its header.
 */
function releaseArchiveRules(): Parameters<typeof unpackPlainFiles>[2] {
  const seen = new Set<string>();
  let top: string | undefined;
  let entries = 0;
  return {
    admit: (entry: ReadEntry) => {
      entries += 1;
      if (entries > MAX_ARCHIVE_ENTRIES) return { refuse: `an agent release has at most ${MAX_ARCHIVE_ENTRIES} files` };
      // `tar -C DIR .` names entries ./NAME: the same as NAME.
      const path = entry.path.replace(/^(\.\/)+/, '').replace(/\/$/, '');
      if ((path === '' || path === '.') && entry.type === 'Directory') return { skip: true };
      const parts = path.split('/');
      if (parts.length > 2 || parts.some((part) => part === '' || part === '.' || part === '..')) return { refuse: 'not a file of the release folder' };
      if (parts.length === 2 || entry.type === 'Directory') {
        top ??= parts[0];
        if (parts[0] !== top) return { refuse: 'a second top folder' };
        if (parts.length === 1) return { skip: true };
      }
      const name = parts[parts.length - 1]!;
      if (entry.type !== 'File') return { refuse: `a ${entry.type}, not a regular file` };
      if (name === 'release.pub') return { skip: true };
      if (!isReleaseFileName(name)) return { refuse: 'not a file an agent release has' };
      if (seen.has(name)) return { refuse: 'a second entry of that name' };
      if ((entry.size ?? 0) > MAX_RELEASE_FILE_BYTES) return { refuse: `larger than a release file may be (${MAX_RELEASE_FILE_BYTES} bytes)` };
      seen.add(name);
      return { write: name };
    },
    refusal: (entry: ReadEntry, why: string) => new CtOpsError('ERR_RELEASE_INVALID', `the release archive holds ${JSON.stringify(entry.path)} (${entry.type}): ${why}`, { entry: entry.path }),
    readError: (error: unknown) =>
      error instanceof CtOpsError ? error : new CtOpsError('ERR_RELEASE_INVALID', `the release archive cannot be read as a tar (or gzip'd tar): ${(error as Error).message}`, {}, { cause: error }),
  };
}

/** Whether `folder` holds every file of `release` at its size (the bytes were checked when they were put there). */
async function holdsFiles(folder: string, release: AgentRelease): Promise<boolean> {
  for (const file of release.files) {
    const stats = await lstat(join(folder, file.name)).catch(() => undefined);
    if (!stats?.isFile() || stats.size !== file.size) return false;
  }
  return true;
}

function sameFiles(release: AgentRelease, checked: CheckedRelease): boolean {
  return release.files.length === checked.files.length && release.files.every((file, index) => file.name === checked.files[index]!.name && file.sha256 === checked.files[index]!.sha256);
}

function conflict(release: AgentRelease): CtOpsError {
  return new CtOpsError('ERR_RELEASE_CONFLICT', `agent release ${release.version} is already imported with other files (imported by ${release.importedBy}); a version names one set of bytes`, { version: release.version });
}

function notFound(version: string): CtOpsError {
  return new CtOpsError('ERR_RELEASE_NOT_FOUND', `no agent release ${version} was imported`, { version });
}
