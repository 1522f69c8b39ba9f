import { sql, type Selectable } from 'kysely';
import type { Tags } from '../model/enrolment.ts';
import type { Approval, HeartbeatUpdate, Host, HostFactsUpdate, NewHost, RegistrationUpdate } from '../model/host.ts';
import type { HostsTable } from './schema.ts';
import type { DialectName } from './dialects.ts';
import { compiledOnce, compiledOncePerLength } from './compiled-query.ts';
import { hostStatusSql, matchingHosts, sortedHosts, streamingSql, type HostFilter, type HostPage, type HostSort } from './host-page.ts';
import { liveStreams } from './appliance-instances.ts';
import type { HostStatus } from '../hosts/status.ts';
import { HOSTS_PER_STATEMENT, powerOfTwoRuns, slices } from './runs.ts';
import { serialiseOn, type Executor } from './unit-of-work.ts';

export type { Approval, HeartbeatUpdate, Host, HostFactsUpdate, IdentityState, NewHost, RegistrationUpdate } from '../model/host.ts';
export { HOST_SORT_KEYS, type HostFilter, type HostPage, type HostSort, type HostSortKey } from './host-page.ts';

type HostRow = Selectable<HostsTable>;

/** Hosts per heartbeat UPDATE: 9 bound values each, far below SQLite's 32,766 and PostgreSQL's 65,535 parameters. */
const HEARTBEATS_PER_STATEMENT = 512;

// The reads and the insert every registration and stream runs, built once (compiled-query.ts).
const hostById = compiledOnce((db, values: { id: string }) => db.selectFrom('hosts').selectAll().where('id', '=', values.id));
const hostByPublicKey = compiledOnce((db, values: { publicKey: Buffer }) => db.selectFrom('hosts').selectAll().where('public_key', '=', values.publicKey));
const hostByPreviousKey = compiledOnce((db, values: { publicKey: Buffer }) => db.selectFrom('hosts').selectAll().where('previous_public_key', '=', values.publicKey));
const liveHostByFingerprint = compiledOnce((db, values: { orgId: string; machineFingerprint: string }) =>
  db
    .selectFrom('hosts')
    .selectAll()
    .where('org_id', '=', values.orgId)
    .where('machine_fingerprint', '=', values.machineFingerprint)
    .where('approval', 'in', ['pending', 'active'])
    .where('deleted_at', 'is', null)
    .orderBy('enrolled_at')
    .limit(1),
);
const insertHost = compiledOnce((db, host: Omit<NewHost, 'installBundleId'> & { tagsJson: string; installBundleId: string | null }) =>
  db
    .insertInto('hosts')
    .values({
      id: host.id,
      org_id: host.orgId,
      public_key: host.publicKey,
      hostname: host.hostname,
      machine_fingerprint: host.machineFingerprint,
      os: host.os,
      arch: host.arch,
      agent_version: host.agentVersion,
      approval: host.approval,
      enrolment_token_id: host.enrolmentTokenId,
      tags: host.tagsJson,
      fingerprint_conflict_with: host.fingerprintConflictWith,
      enrolled_at: host.enrolledAt,
      last_registered_at: host.enrolledAt,
      install_bundle_id: host.installBundleId,
    })
    .onConflict((conflict) => conflict.column('public_key').doNothing())
    .returningAll(),
);

// Every flush of heartbeats runs it, once per run of hosts (powerOfTwoRuns): built once per run length.
const recordHeartbeatRun = compiledOncePerLength((_db, updates: readonly HeartbeatUpdate[]) => {
  const rows = updates.map((update) => sql`(CAST(${update.hostId} AS TEXT), CAST(${update.receivedAt} AS BIGINT), CAST(${update.intervalSecs} AS INTEGER), CAST(${update.agentVersion} AS TEXT), CAST(${update.cpuPercent} AS DOUBLE PRECISION), CAST(${update.memoryPercent} AS DOUBLE PRECISION), CAST(${update.diskPercent} AS DOUBLE PRECISION), CAST(${update.uptimeSeconds} AS BIGINT), CAST(${update.clockOffsetMs} AS BIGINT))`);
  return sql`UPDATE hosts SET last_heartbeat_at = v.column2, heartbeat_interval_secs = v.column3, agent_version = v.column4, cpu_percent = v.column5, memory_percent = v.column6, disk_percent = v.column7, uptime_seconds = v.column8, clock_offset_ms = COALESCE(v.column9, hosts.clock_offset_ms) FROM (VALUES ${sql.join(rows)}) AS v WHERE hosts.id = v.column1`;
});

/** Owns the hosts table (its trust columns: host-trust.ts). */
export class HostStore {
  readonly #db: Executor;
  readonly #dialect: DialectName;

  constructor(executor: Executor, dialect: DialectName) {
    this.#db = executor;
    this.#dialect = dialect;
  }

  async get(id: string): Promise<Host | undefined> {
    const [row] = (await hostById(this.#db, { id })).rows;
    return row && toHost(row);
  }

  /**
   * The host, its row kept from changing until the transaction ends: for a workflow whose writes
   * stand only while the host stays as read (inventory stored only while it may stream). PostgreSQL:
   * FOR SHARE — a decision or delete committing meanwhile is waited for and then seen, one not yet
   * committed waits for this transaction. SQLite: a plain read (its one writer serialises them).
   */
  async getForShare(id: string): Promise<Host | undefined> {
    const query = this.#db.selectFrom('hosts').selectAll().where('id', '=', id);
    const row = await (this.#dialect === 'postgres' ? query.forShare() : query).executeTakeFirst();
    return row && toHost(row);
  }

  /** The hosts among `ids` that exist (deleted ones included), in no particular order; at most 500 ids per call. */
  async getMany(ids: readonly string[]): Promise<Host[]> {
    if (ids.length === 0) return [];
    const rows = await this.#db.selectFrom('hosts').selectAll().where('id', 'in', ids).execute();
    return rows.map(toHost);
  }

  async findByPublicKey(publicKey: Buffer): Promise<Host | undefined> {
    const [row] = (await hostByPublicKey(this.#db, { publicKey })).rows;
    return row && toHost(row);
  }

  /** The host whose key the last rotation retired was `publicKey`, if any. */
  async findByPreviousKey(publicKey: Buffer): Promise<Host | undefined> {
    const [row] = (await hostByPreviousKey(this.#db, { publicKey })).rows;
    return row && toHost(row);
  }

  /** The organisation's hosts that are not deleted, oldest enrolment first. */
  async list(orgId: string): Promise<Host[]> {
    const rows = await this.#db.selectFrom('hosts').selectAll().where('org_id', '=', orgId).where('deleted_at', 'is', null).orderBy('enrolled_at').orderBy('id').execute();
    return rows.map(toHost);
  }

  /**
   * A page of the organisation's hosts that are not deleted and match `filter`, in `sort`'s order
   * (`limit` hosts from `offset`), and how many match: filtered, sorted and counted in the database,
   * status included (host-page.ts). `now` is the lease clock "online" is judged in (ClusterService.now).
   */
  async page(orgId: string, filter: HostFilter, sort: HostSort, limit: number, offset: number, now: number): Promise<HostPage> {
    const matching = matchingHosts(this.#db, this.#dialect, orgId, filter, now);
    const rows = await sortedHosts(this.#db, matching.selectAll('hosts').select((eb) => streamingSql(this.#db, eb, now).as('online')), sort, now)
      // Bound, not written into the text as SQLite's compiler does with counts (dialects.ts): one text
      // per filter and sort however far the admin pages, not one per page crowding the prepared statements.
      .limit(sql<number>`${limit}`)
      .offset(sql<number>`${offset}`)
      .execute();
    const counted = await matching.select((eb) => eb.fn.countAll<number | string>().as('count')).executeTakeFirstOrThrow();
    // SQLite answers EXISTS with 1 or 0, PostgreSQL with true or false.
    return { hosts: rows.map(toHost), online: new Set(rows.filter((row) => Boolean(row.online)).map((row) => row.id)), total: Number(counted.count) };
  }

  /**
   * For each of `tokenIds`, the host that enrolled with it last (deleted hosts included: the token's
   * use happened): the console's "last used by which host and when".
   */
  async lastEnrolledWith(orgId: string, tokenIds: readonly string[]): Promise<Map<string, { hostId: string; hostname: string; enrolledAt: number }>> {
    if (tokenIds.length === 0) return new Map();
    const rows = await this.#db
      .selectFrom('hosts')
      .select(['id', 'hostname', 'enrolled_at', 'enrolment_token_id'])
      .where('org_id', '=', orgId)
      .where('enrolment_token_id', 'in', [...tokenIds])
      .orderBy('enrolled_at', 'asc')
      .orderBy('id', 'asc')
      .execute();
    // Ascending: the last row of each token wins.
    return new Map(rows.map((row) => [row.enrolment_token_id!, { hostId: row.id, hostname: row.hostname, enrolledAt: row.enrolled_at }]));
  }

  /** How many of the organisation's hosts (not deleted) have each status at `now`: one GROUP BY over hostStatusSql. */
  async statusCounts(orgId: string, now: number): Promise<Map<HostStatus, number>> {
    const rows = await matchingHosts(this.#db, this.#dialect, orgId, {}, now)
      .select((eb) => [hostStatusSql(this.#db, eb, now).as('status'), eb.fn.countAll<number | string>().as('count')])
      .groupBy('status')
      .execute();
    return new Map(rows.map((row) => [row.status, Number(row.count)]));
  }

  /**
   * A text that changes whenever what the console shows of the organisation's hosts may have changed:
   * a host enrolled, decided, disconnected, deleted, its identity flagged or resolved, or a stream
   * opened or closed. Not a pending agent's repeated Register (every few seconds, changing nothing
   * shown): each change makes every open console fetch its fragments again. Counts and newest times only,
   * two aggregate reads: cheap enough to poll every few seconds while a console is open (console/live.ts).
   */
  async changeMark(orgId: string, now: number): Promise<string> {
    const hosts = await this.#db
      .selectFrom('hosts')
      .where('org_id', '=', orgId)
      .select((eb) => [
        eb.fn.countAll<number | string>().as('count'),
        eb.fn.count<number | string>('deleted_at').as('deleted'),
        eb.fn.max('enrolled_at').as('enrolled'),
        eb.fn.max('decided_at').as('decided'),
        eb.fn.max('last_disconnected_at').as('disconnected'),
        eb.fn.count<number | string>('identity_state').as('identity'),
        eb.fn.max('identity_resolved_at').as('resolved'),
      ])
      .executeTakeFirstOrThrow();
    const streams = await liveStreams(this.#db, now)
      .clearSelect()
      .select((eb) => [eb.fn.countAll<number | string>().as('count'), eb.fn.max('host_streams.connected_at').as('connected')])
      .executeTakeFirstOrThrow();
    return JSON.stringify([hosts, streams]);
  }

  /**
   * The earliest pending or active host of the organisation with this machine fingerprint. Inside a
   * transaction it first takes the fingerprint's lock (serialiseOn), held to the end of the
   * transaction: registrations from one machine decide one after the other, so the second sees the
   * host the first inserted (a clone is flagged, never enrolled twice as active).
   */
  async findLiveByFingerprint(orgId: string, machineFingerprint: string): Promise<Host | undefined> {
    if (this.#db.isTransaction) await serialiseOn(this.#db, this.#dialect, `host-fingerprint/${orgId}/${machineFingerprint}`);
    const [row] = (await liveHostByFingerprint(this.#db, { orgId, machineFingerprint })).rows;
    return row && toHost(row);
  }

  /**
   * Inserts a host unless one already holds its public key (the key is unique): the host as stored
   * (RETURNING, so a registration reads no row back), or undefined — the registration that got there
   * first owns the key, the caller reads that host.
   */
  async insert(host: NewHost): Promise<Host | undefined> {
    const inserted = await insertHost(this.#db, { ...host, tagsJson: JSON.stringify(host.tags), installBundleId: host.installBundleId ?? null });
    const row = inserted.rows[0];
    return row === undefined ? undefined : toHost(row);
  }

  async updateRegistration(id: string, update: RegistrationUpdate): Promise<void> {
    await this.#db
      .updateTable('hosts')
      .set({ hostname: update.hostname, machine_fingerprint: update.machineFingerprint, os: update.os, arch: update.arch, agent_version: update.agentVersion, last_registered_at: update.at })
      .where('id', '=', id)
      .execute();
  }

  /**
   * Moves a host to a new approval state if it is in one of `from`; false otherwise.
   * The check and the write are one statement, so two admins cannot race past it.
   */
  async decide(id: string, to: Approval, from: readonly Approval[], at: number, by: string): Promise<boolean> {
    const result = await this.#updateLive(id).set({ approval: to, decided_at: at, decided_by: by }).where('approval', 'in', [...from]).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Records each host's latest heartbeat (last seen, interval, version, vitals; a null clock offset
   * keeps the recorded one) and never touches approval: one UPDATE … FROM (VALUES …) per run of at
   * most HEARTBEATS_PER_STATEMENT hosts, the same SQL on both backends (SQLite 3.33+ and PostgreSQL
   * both take UPDATE … FROM and name a VALUES list's columns column1, column2, …; each value is cast
   * so PostgreSQL knows its type). One host at most once per call.
   */
  async recordHeartbeats(updates: readonly HeartbeatUpdate[]): Promise<void> {
    for (const run of powerOfTwoRuns(updates, HEARTBEATS_PER_STATEMENT)) {
      await recordHeartbeatRun(this.#db, run);
    }
  }

  /** Records that each host of `ids` went offline at `at` (ms), HOSTS_PER_STATEMENT per statement. */
  async recordDisconnects(ids: readonly string[], at: number): Promise<void> {
    for (const slice of slices(ids, HOSTS_PER_STATEMENT)) await this.#db.updateTable('hosts').set({ last_disconnected_at: at }).where('id', 'in', slice).execute();
  }

  /** Soft-deletes a host (retiring its key); false when it was already deleted. */
  async markDeleted(id: string, at: number, by: string): Promise<boolean> {
    const result = await this.#db.updateTable('hosts').set({ deleted_at: at, deleted_by: by }).where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Stores the facts a stream reported; never touches approval or the identity key. */
  async recordFacts(id: string, facts: HostFactsUpdate): Promise<void> {
    await this.#db
      .updateTable('hosts')
      .set({ hostname: facts.hostname, os: facts.os, os_version: facts.osVersion, arch: facts.arch, agent_version: facts.agentVersion, ip_addresses: JSON.stringify(facts.ipAddresses) })
      .where('id', '=', id)
      .execute();
  }

  /** Flags the host: two machines use its key. False when it already was. */
  async flagIdentityConflict(id: string): Promise<boolean> {
    const result = await this.#updateLive(id)
      .set({ identity_state: 'conflict' })
      .where((eb) => eb.or([eb('identity_state', 'is', null), eb('identity_state', '!=', 'conflict')]))
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Records the admin's choice and how many others may re-enrol; false unless the host was flagged. */
  async resolveIdentity(id: string, kept: { fingerprint: string | null; instance: string | null }, successors: number, rotationNonceSha256: Buffer, at: number): Promise<boolean> {
    const result = await this.#updateLive(id)
      .set({
        identity_state: 'resolved',
        identity_kept_fingerprint: kept.fingerprint,
        identity_kept_instance: kept.instance,
        identity_successors_allowed: successors,
        identity_resolved_at: at,
        identity_rotation_nonce_sha256: rotationNonceSha256,
      })
      .where('identity_state', '=', 'conflict')
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Replaces the pending rotation's nonce hash with that of a nonce offered now; false when no rotation is pending. */
  async offerKeyRotation(id: string, nonceSha256: Buffer): Promise<boolean> {
    const result = await this.#updateLive(id)
      .set({ identity_rotation_nonce_sha256: nonceSha256 })
      .where('identity_rotation_nonce_sha256', 'is not', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * Moves the host to `newKey` when `oldKey` is its current key and `nonceSha256` the pending
   * rotation's; ends a resolution and its pin (the re-enrolment allowance, and the time it lasts,
   * outlive it). False when either does not match (already rotated, or refused).
   */
  async rotateKey(id: string, oldKey: Buffer, newKey: Buffer, nonceSha256: Buffer, at: number): Promise<boolean> {
    const result = await this.#updateLive(id)
      .set({
        public_key: newKey,
        previous_public_key: oldKey,
        key_rotated_at: at,
        identity_rotation_nonce_sha256: null,
        identity_state: sql<HostRow['identity_state']>`CASE WHEN identity_state = 'resolved' THEN NULL ELSE identity_state END`,
        identity_kept_fingerprint: null,
        identity_kept_instance: null,
      })
      .where('public_key', '=', oldKey)
      .where('identity_rotation_nonce_sha256', '=', nonceSha256)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Ends a conflict or a resolution: the host is judged as any other again. False when it had neither. */
  async clearIdentityState(id: string): Promise<boolean> {
    const result = await this.#updateLive(id)
      .set({
        identity_state: null,
        identity_kept_fingerprint: null,
        identity_kept_instance: null,
        identity_successors_allowed: 0,
        identity_resolved_at: null,
        identity_rotation_nonce_sha256: null,
      })
      .where('identity_state', 'is not', null)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /** Spends one successor allowance (a retired claimant enrolling anew); false when none is left. */
  async takeSuccessorAllowance(id: string): Promise<boolean> {
    // The last allowance used ends the resolution: the kept machine is then the only one left.
    const lastUsed = sql<boolean>`identity_successors_allowed = 1`;
    const result = await this.#updateLive(id)
      .set((eb) => ({
        identity_successors_allowed: eb('identity_successors_allowed', '-', 1),
        identity_state: sql<HostRow['identity_state']>`CASE WHEN ${lastUsed} AND identity_state = 'resolved' THEN NULL ELSE identity_state END`,
        identity_kept_fingerprint: sql<string | null>`CASE WHEN ${lastUsed} THEN NULL ELSE identity_kept_fingerprint END`,
        identity_kept_instance: sql<string | null>`CASE WHEN ${lastUsed} THEN NULL ELSE identity_kept_instance END`,
        identity_resolved_at: sql<number | null>`CASE WHEN ${lastUsed} THEN NULL ELSE identity_resolved_at END`,
      }))
      .where('identity_successors_allowed', '>', 0)
      .executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }

  /**
   * An UPDATE of host `id` that matches only while it is not deleted. Every conditional write of a
   * workflow goes through it: on PostgreSQL another instance may delete the host between the
   * workflow's read and its write, and the write must then change nothing (decision 129).
   */
  #updateLive(id: string) {
    return this.#db.updateTable('hosts').where('id', '=', id).where('deleted_at', 'is', null);
  }

  /** The new host takes over the old one's tags and links both records; false when the new one already replaced a host. */
  async takeOver(newId: string, old: Host): Promise<boolean> {
    const taken = await this.#updateLive(newId).set({ replaces: old.id, tags: JSON.stringify(old.tags) }).where('replaces', 'is', null).executeTakeFirst();
    if (Number(taken.numUpdatedRows) !== 1) return false;
    await this.#db.updateTable('hosts').set({ replaced_by: newId }).where('id', '=', old.id).execute();
    return true;
  }
}

function toHost(row: HostRow): Host {
  return {
    id: row.id,
    orgId: row.org_id,
    publicKey: row.public_key,
    hostname: row.hostname,
    machineFingerprint: row.machine_fingerprint,
    os: row.os,
    arch: row.arch,
    agentVersion: row.agent_version,
    approval: row.approval,
    enrolmentTokenId: row.enrolment_token_id,
    tags: JSON.parse(row.tags) as Tags,
    fingerprintConflictWith: row.fingerprint_conflict_with,
    enrolledAt: row.enrolled_at,
    decidedAt: row.decided_at,
    decidedBy: row.decided_by,
    lastRegisteredAt: row.last_registered_at,
    lastHeartbeatAt: row.last_heartbeat_at,
    lastDisconnectedAt: row.last_disconnected_at,
    heartbeatIntervalSecs: row.heartbeat_interval_secs,
    cpuPercent: row.cpu_percent,
    memoryPercent: row.memory_percent,
    diskPercent: row.disk_percent,
    uptimeSeconds: row.uptime_seconds,
    deletedAt: row.deleted_at,
    deletedBy: row.deleted_by,
    clockOffsetMs: row.clock_offset_ms,
    osVersion: row.os_version,
    ipAddresses: JSON.parse(row.ip_addresses) as string[],
    identityState: row.identity_state,
    identityKeptFingerprint: row.identity_kept_fingerprint,
    identityKeptInstance: row.identity_kept_instance,
    identitySuccessorsAllowed: row.identity_successors_allowed,
    identityResolvedAt: row.identity_resolved_at,
    identityRotationNonceSha256: row.identity_rotation_nonce_sha256,
    previousPublicKey: row.previous_public_key,
    keyRotatedAt: row.key_rotated_at,
    replaces: row.replaces,
    replacedBy: row.replaced_by,
    installBundleId: row.install_bundle_id,
  };
}
