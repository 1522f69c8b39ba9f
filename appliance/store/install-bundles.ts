import type { Selectable } from 'kysely';
import type { BundleHosts, InstallBundle, InstallBundleInput } from '../model/bundle.ts';
import type { Tags } from '../model/enrolment.ts';
import type { InstallBundlesTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';

export type { BundleHosts, BundleTokenMode, InstallBundle, InstallBundleInput, InstallBundleRecord } from '../model/bundle.ts';

/**
 * Owns the install_bundles table (migration 026), and reads which hosts claim each bundle
 * (hosts.install_bundle_id, set once at enrolment). Times are ms since the epoch.
 */
export class InstallBundleStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /**
   * Records a built bundle. A bundle already recorded under its id is left as it is: only a
   * reproducible rebuild (SOURCE_DATE_EPOCH, the id derived from the inputs) repeats an id, and it
   * wrote the same bytes.
   */
  async insert(bundle: InstallBundleInput): Promise<void> {
    await this.#db
      .insertInto('install_bundles')
      .values({
        id: bundle.id,
        org_id: bundle.orgId,
        created_at: bundle.createdAt,
        created_by: bundle.createdBy,
        os: bundle.os,
        arch: bundle.arch,
        agent_version: bundle.agentVersion,
        addresses: JSON.stringify(bundle.addresses),
        tags: JSON.stringify(bundle.tags),
        label: bundle.label,
        token_mode: bundle.tokenMode,
        token_id: bundle.tokenId,
        zip_file: bundle.zipFile,
        zip_size: bundle.zipSize,
        zip_sha256: bundle.zipSha256,
        bundle_key_id: bundle.bundleKeyId,
        ca_fingerprint: bundle.caFingerprint,
      })
      .onConflict((conflict) => conflict.column('id').doNothing())
      .execute();
  }

  async get(id: string): Promise<InstallBundle | undefined> {
    const row = await this.#db.selectFrom('install_bundles').selectAll().where('id', '=', id).executeTakeFirst();
    return row === undefined ? undefined : bundleOf(row);
  }

  /** A page of the organisation's bundles, newest first (withdrawn ones included), and how many it has in all. */
  async list(orgId: string, limit: number, offset: number): Promise<{ bundles: InstallBundle[]; total: number }> {
    const [rows, count] = await Promise.all([
      this.#db.selectFrom('install_bundles').selectAll().where('org_id', '=', orgId).orderBy('created_at', 'desc').orderBy('id', 'desc').limit(limit).offset(offset).execute(),
      this.#db.selectFrom('install_bundles').select((eb) => eb.fn.countAll<number | string>().as('total')).where('org_id', '=', orgId).executeTakeFirstOrThrow(),
    ]);
    return { bundles: rows.map(bundleOf), total: Number(count.total) };
  }

  /** Marks a bundle withdrawn once; false when there is no such bundle or it was withdrawn already. */
  async markWithdrawn(id: string, by: string, at: number): Promise<boolean> {
    const result = await this.#db.updateTable('install_bundles').set({ withdrawn_at: at, withdrawn_by: by }).where('id', '=', id).where('withdrawn_at', 'is', null).executeTakeFirst();
    return Number(result.numUpdatedRows) > 0;
  }

  /**
   * For each of `bundleIds`, the organisation's hosts that claimed it (deleted hosts included: the
   * chain of custody outlives the host) and the newest of them (latest enrolment, then highest id).
   * A bundle no host claimed is absent from the map. One read: each host is ranked within its bundle.
   */
  async hostsEnrolled(orgId: string, bundleIds: readonly string[]): Promise<Map<string, BundleHosts>> {
    if (bundleIds.length === 0) return new Map();
    const ranked = this.#db
      .selectFrom('hosts')
      .select((eb) => [
        'install_bundle_id',
        'id',
        'hostname',
        'enrolled_at',
        eb.fn.agg<number>('row_number').over((over) => over.partitionBy('install_bundle_id').orderBy('enrolled_at', 'desc').orderBy('id', 'desc')).as('position'),
        eb.fn.countAll<number | string>().over((over) => over.partitionBy('install_bundle_id')).as('enrolled'),
      ])
      .where('org_id', '=', orgId)
      // Implied by the IN below, but SQLite uses the partial index hosts_org_install_bundle only when the query says it.
      .where('install_bundle_id', 'is not', null)
      .where('install_bundle_id', 'in', [...bundleIds]);
    const rows = await this.#db.selectFrom(ranked.as('ranked')).selectAll().where('position', '=', 1).execute();
    return new Map(rows.map((row) => [row.install_bundle_id!, { enrolled: Number(row.enrolled), last: { hostId: row.id, hostname: row.hostname, enrolledAt: row.enrolled_at } }]));
  }
}

function bundleOf(row: Selectable<InstallBundlesTable>): InstallBundle {
  return {
    id: row.id,
    orgId: row.org_id,
    createdAt: row.created_at,
    createdBy: row.created_by,
    os: row.os,
    arch: row.arch,
    agentVersion: row.agent_version,
    addresses: JSON.parse(row.addresses) as string[],
    tags: JSON.parse(row.tags) as Tags,
    label: row.label,
    tokenMode: row.token_mode,
    tokenId: row.token_id,
    zipFile: row.zip_file,
    zipSize: row.zip_size,
    zipSha256: row.zip_sha256,
    bundleKeyId: row.bundle_key_id,
    caFingerprint: row.ca_fingerprint,
    withdrawnAt: row.withdrawn_at,
    withdrawnBy: row.withdrawn_by,
  };
}
