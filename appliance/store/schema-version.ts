import { CtOpsError } from '../../common/errors.ts';
import type { Migration } from './migrations/index.ts';

/** The schema version the last of `migrations` leaves: what this build knows up to (0 for an empty list). */
export function latestSchemaVersion(migrations: readonly Migration[]): number {
  return migrations.at(-1)?.version ?? 0;
}

/**
 * The one rule for a database's schema version, on either backend and in every tool that opens a
 * database: a version past the last of `migrations` was written by a newer appliance, and no build
 * migrates down. Throws ERR_SCHEMA_TOO_NEW then, its message naming `database` ("the database",
 * "the backed-up database") and ending with `remedy` when given; otherwise returns the latest version.
 */
export function refuseNewerSchema(current: number, migrations: readonly Migration[], database = 'the database', remedy?: string): number {
  const latest = latestSchemaVersion(migrations);
  if (current > latest) {
    throw new CtOpsError('ERR_SCHEMA_TOO_NEW', `${database} has schema version ${current}; this appliance knows up to ${latest}${remedy === undefined ? '' : `: ${remedy}`}`, { current, latest });
  }
  return latest;
}
