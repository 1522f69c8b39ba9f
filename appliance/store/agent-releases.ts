import type { Selectable } from 'kysely';
import { CtOpsError } from '../../common/errors.ts';
import { isReleaseVersion } from '../../common/release-version.ts';
import type { AgentRelease, ReleaseFile, ReleaseMinimum } from '../model/release.ts';
import type { AgentReleasesTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';

export type { AgentRelease, ReleaseFile } from '../model/release.ts';

const COLUMNS = ['version', 'key_id', 'trusted_comment', 'files', 'imported_at', 'imported_by', 'retired_at'] as const;
type ReleaseRow = Pick<Selectable<AgentReleasesTable>, (typeof COLUMNS)[number]>;


/** Owns the agent_releases table (migration 018). Versions are ordered by their numbers, highest first. */
export class AgentReleaseStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /**
   * Stores an imported release; false (nothing changed) when its version is already stored, whatever
   * that row holds. Throws ERR_INTERNAL for a version that is not MAJOR.MINOR.PATCH (the import
   * validates it; the store only splits it into the columns it orders by).
   */
  async insert(release: AgentRelease): Promise<boolean> {
    const [major, minor, patch] = versionNumbers(release.version);
    const result = await this.#db
      .insertInto('agent_releases')
      .values({
        version: release.version,
        version_major: major,
        version_minor: minor,
        version_patch: patch,
        key_id: release.keyId,
        trusted_comment: release.trustedComment,
        files: JSON.stringify(release.files.map(fileFields)),
        imported_at: release.importedAt,
        imported_by: release.importedBy,
        retired_at: release.retiredAt,
      })
      .onConflict((conflict) => conflict.column('version').doNothing())
      .executeTakeFirst();
    return Number(result.numInsertedOrUpdatedRows ?? 0) === 1;
  }

  async get(version: string): Promise<AgentRelease | undefined> {
    const row = await this.#db.selectFrom('agent_releases').select(COLUMNS).where('version', '=', version).executeTakeFirst();
    return row && toRelease(row);
  }

  /** Every release, retired ones included, highest version first. */
  async list(): Promise<AgentRelease[]> {
    const rows = await this.#ordered().execute();
    return rows.map(toRelease);
  }

  /** The release of the highest version; `includeRetired: false` skips retired ones. Undefined when there is none. */
  async newest(options: { includeRetired: boolean }): Promise<AgentRelease | undefined> {
    const query = options.includeRetired ? this.#ordered() : this.#ordered().where('retired_at', 'is', null);
    const row = await query.limit(1).executeTakeFirst();
    return row && toRelease(row);
  }

  /** Retires a release at `at` (ms since the epoch); false when it is unknown or already retired (its first time kept). */
  async retire(version: string, at: number): Promise<boolean> {
    const result = await this.#db.updateTable('agent_releases').set({ retired_at: at }).where('version', '=', version).where('retired_at', 'is', null).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** The organisation's minimum agent version (release_minimums, migration 020); undefined when it set none. */
  async minimum(orgId: string): Promise<ReleaseMinimum | undefined> {
    const row = await this.#db.selectFrom('release_minimums').select(['version', 'set_at', 'set_by']).where('org_id', '=', orgId).executeTakeFirst();
    return row && { version: row.version, setAt: row.set_at, setBy: row.set_by };
  }

  /**
   * Sets the organisation's minimum agent version (replacing the one set), or clears it when
   * `minimum` is undefined. Rejects with a foreign-key violation for a version not imported.
   */
  async setMinimum(orgId: string, minimum: ReleaseMinimum | undefined): Promise<void> {
    if (minimum === undefined) {
      await this.#db.deleteFrom('release_minimums').where('org_id', '=', orgId).execute();
      return;
    }
    const row = { org_id: orgId, version: minimum.version, set_at: minimum.setAt, set_by: minimum.setBy };
    await this.#db
      .insertInto('release_minimums')
      .values(row)
      .onConflict((conflict) => conflict.column('org_id').doUpdateSet({ version: row.version, set_at: row.set_at, set_by: row.set_by }))
      .execute();
  }

  /** Every row's columns, highest version first (numerically: 1.10.0 before 1.9.0). */
  #ordered() {
    return this.#db
      .selectFrom('agent_releases')
      .select(COLUMNS)
      .orderBy('version_major', 'desc')
      .orderBy('version_minor', 'desc')
      .orderBy('version_patch', 'desc');
  }
}

/** The three numbers of a MAJOR.MINOR.PATCH version; throws ERR_INTERNAL for any other text or a number past 2^53. */
function versionNumbers(version: string): [number, number, number] {
  const numbers = isReleaseVersion(version) ? version.split('.').map(Number) : undefined;
  if (numbers === undefined) {
    throw new CtOpsError('ERR_INTERNAL', `an agent release version must be MAJOR.MINOR.PATCH, not "${version}"`, { version });
  }
  return numbers as [number, number, number];
}

/** Only the fields of a release file, in their order: what the files column holds per file. */
function fileFields({ name, sha256, size }: ReleaseFile): ReleaseFile {
  return { name, sha256, size };
}

function isReleaseFile(value: unknown): value is ReleaseFile {
  if (typeof value !== 'object' || value === null) return false;
  const { name, sha256, size } = value as Record<string, unknown>;
  return typeof name === 'string' && typeof sha256 === 'string' && Number.isSafeInteger(size) && (size as number) >= 0;
}

/**
 * The files column of `version`'s row read back. This store writes it, but it is the list a release
 * is checked against, so a row that does not hold one is an error (ERR_DATABASE), never a shorter list.
 */
function parseFiles(version: string, json: string): ReleaseFile[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (cause) {
    throw new CtOpsError('ERR_DATABASE', `the stored files of agent release ${version} are not JSON`, { version }, { cause });
  }
  if (!Array.isArray(parsed) || !parsed.every(isReleaseFile)) {
    throw new CtOpsError('ERR_DATABASE', `the stored files of agent release ${version} are not a list of {name, sha256, size}`, { version });
  }
  return parsed.map(fileFields);
}

function toRelease(row: ReleaseRow): AgentRelease {
  return {
    version: row.version,
    keyId: row.key_id,
    trustedComment: row.trusted_comment,
    files: parseFiles(row.version, row.files),
    importedAt: row.imported_at,
    importedBy: row.imported_by,
    retiredAt: row.retired_at,
  };
}
