import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { sql, type ExpressionBuilder, type QueryCreator } from 'kysely';
import type { Claimant } from '../model/host.ts';
import type { DialectName } from './dialects.ts';
import type { Schema } from './schema.ts';
import { compiledOnce } from './compiled-query.ts';
import { atomically, type Executor } from './unit-of-work.ts';
import { HOSTS_PER_STATEMENT, slices } from './runs.ts';

/**
 * The PostgreSQL channel every instance LISTENs on for the others' signals (cluster/signals.ts).
 * One channel for every kind: a NOTIFY is delivered to every listener, so kinds are told apart by
 * the payload.
 */
export const CLUSTER_CHANNEL = 'ct_ops_cluster';

/** A stream this instance holds in memory, as reclaimStreams records it. */
export interface HeldStream {
  readonly hostId: string;
  readonly streamId: string;
  readonly claimant: Claimant | undefined;
}

/** The host_streams row of `stream`, held by `instanceId` from `now`; '' for each claimant field its agent did not send. */
function streamRow({ hostId, streamId, claimant }: HeldStream, instanceId: string, now: number) {
  return {
    host_id: hostId,
    instance_id: instanceId,
    connected_at: now,
    stream_id: streamId,
    agent_instance_id: claimant?.instanceId ?? '',
    machine_fingerprint: claimant?.machineFingerprint ?? '',
    hostname: claimant?.hostname ?? '',
    source: claimant?.source ?? '',
  };
}

// Every stream opening runs it, so built once (compiled-query.ts).
const claimStreamRow = compiledOnce((db, row: ReturnType<typeof streamRow>) => {
  // Named one by one: the values are placeholders while this runs, with no keys to spread.
  const held = {
    instance_id: row.instance_id,
    connected_at: row.connected_at,
    stream_id: row.stream_id,
    agent_instance_id: row.agent_instance_id,
    machine_fingerprint: row.machine_fingerprint,
    hostname: row.hostname,
    source: row.source,
  };
  return db
    .insertInto('host_streams')
    .values({ host_id: row.host_id, ...held })
    .onConflict((conflict) => conflict.column('host_id').doUpdateSet(held));
});

/**
 * The hosts online at `now`, on any instance: those whose host_streams row names an instance whose
 * lease has not expired (decisions.md 109). The one definition of "online": streamingAmong reads it,
 * HostStore.page tests each host against it inside its status expression.
 */
export function liveStreams(db: QueryCreator<Schema>, now: number) {
  return db
    .selectFrom('host_streams')
    .innerJoin('appliance_instances', 'appliance_instances.id', 'host_streams.instance_id')
    .select('host_streams.host_id')
    .where('appliance_instances.lease_expires_at', '>', now);
}

/** A host_streams row whose instance's lease expired by `now`, or whose instance left no row. */
const heldByNoLiveInstance = (now: number) => (eb: ExpressionBuilder<Schema, 'host_streams'>) =>
  eb.not(eb.exists(eb.selectFrom('appliance_instances').select('id').whereRef('appliance_instances.id', '=', 'host_streams.instance_id').where('lease_expires_at', '>', now)));

/**
 * Owns appliance_instances (each serving instance's lease) and host_streams (which instance holds
 * each host's current Heartbeat stream), and the database's cross-instance primitives: advisory
 * locks and NOTIFY. Times are ms since the epoch. On SQLite the one appliance is the only
 * instance: the tables work the same, `exclusively` runs the work at once and `notify` is a no-op
 * (there is nobody else to tell).
 */
export class ApplianceInstanceStore {
  readonly #db: Executor;
  readonly #dialect: DialectName;

  constructor(executor: Executor, dialect: DialectName) {
    this.#db = executor;
    this.#dialect = dialect;
  }

  /**
   * Extends the instance's lease to now + leaseMs. 'renewed' when it still held one; 'regained'
   * when its lease had run out (or its row was removed by another instance's lost-stream pass:
   * takeLostStreams), so its host_streams rows may be gone and must be claimed again; the first
   * call of a new instance is 'regained' too.
   */
  async renewLease(instanceId: string, now: number, leaseMs: number): Promise<'renewed' | 'regained'> {
    const renewed = await this.#db
      .updateTable('appliance_instances')
      .set({ lease_expires_at: now + leaseMs })
      .where('id', '=', instanceId)
      .where('lease_expires_at', '>', now)
      .executeTakeFirst();
    if (Number(renewed.numUpdatedRows) === 1) return 'renewed';
    await this.#db
      .insertInto('appliance_instances')
      .values({ id: instanceId, started_at: now, lease_expires_at: now + leaseMs })
      .onConflict((conflict) => conflict.column('id').doUpdateSet({ lease_expires_at: now + leaseMs }))
      .execute();
    return 'regained';
  }

  /** Removes the instance and its stream rows (a clean stop: its hosts are offline at once). */
  leave(instanceId: string): Promise<void> {
    return atomically(this.#db, async (db) => {
      await db.deleteFrom('host_streams').where('instance_id', '=', instanceId).execute();
      await db.deleteFrom('appliance_instances').where('id', '=', instanceId).execute();
    });
  }

  /**
   * Removes every other instance and its stream rows: for an appliance that knows it is the only
   * one (SQLite, its data directory locked), whose previous process may have died without leaving.
   */
  forgetOthers(instanceId: string): Promise<void> {
    return atomically(this.#db, async (db) => {
      await db.deleteFrom('host_streams').where('instance_id', '!=', instanceId).execute();
      await db.deleteFrom('appliance_instances').where('id', '!=', instanceId).execute();
    });
  }

  /** The number of instances other than `instanceId` whose lease has not expired at `now`. */
  async othersAlive(instanceId: string, now: number): Promise<number> {
    const row = await this.#db
      .selectFrom('appliance_instances')
      .select((eb) => eb.fn.countAll<number | string>().as('count'))
      .where('id', '!=', instanceId)
      .where('lease_expires_at', '>', now)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  /**
   * Records that `instanceId` holds the host's current stream (`streamId`, random per stream) from
   * `now`, whoever held it before, with the machine behind it (undefined: its agent sent no HostFacts).
   */
  async claimStream(hostId: string, instanceId: string, streamId: string, claimant: Claimant | undefined, now: number): Promise<void> {
    await claimStreamRow(this.#db, streamRow({ hostId, streamId, claimant }, instanceId, now));
  }

  /**
   * The machine behind the host's stream when another live instance holds it: undefined when no
   * other instance does, null when one does but its agent said no machine (no HostFacts).
   */
  async holderElsewhere(hostId: string, instanceId: string, now: number): Promise<Claimant | null | undefined> {
    const row = await this.#db
      .selectFrom('host_streams')
      .innerJoin('appliance_instances', 'appliance_instances.id', 'host_streams.instance_id')
      .select(['agent_instance_id', 'machine_fingerprint', 'hostname', 'source'])
      .where('host_streams.host_id', '=', hostId)
      .where('host_streams.instance_id', '!=', instanceId)
      .where('appliance_instances.lease_expires_at', '>', now)
      .executeTakeFirst();
    if (row === undefined) return undefined;
    if (row.agent_instance_id === '') return null;
    return { instanceId: row.agent_instance_id, machineFingerprint: row.machine_fingerprint, hostname: row.hostname, source: row.source };
  }

  /**
   * Claims again the streams the instance holds in memory whose rows are gone (its lease had run out
   * and another instance's lost-stream pass removed them, or a claim write failed), each with its
   * stream id and machine; a host whose row another instance holds is not taken back. Returns those
   * hosts (their streams here are stale). Chunked: any number of streams.
   */
  async reclaimStreams(streams: readonly HeldStream[], instanceId: string, now: number): Promise<string[]> {
    const heldElsewhere: string[] = [];
    for (const [index, chunk] of slices(streams, HOSTS_PER_STATEMENT).entries()) {
      // Heartbeats are served between chunks: after a lost lease every stream may be reclaimed.
      if (index > 0) await yieldToEventLoop();
      await this.#db
        .insertInto('host_streams')
        .values(chunk.map((stream) => streamRow(stream, instanceId, now)))
        .onConflict((conflict) => conflict.column('host_id').doNothing())
        .execute();
      const rows = await this.#db.selectFrom('host_streams').select('host_id').where('host_id', 'in', chunk.map((stream) => stream.hostId)).where('instance_id', '!=', instanceId).execute();
      heldElsewhere.push(...rows.map((row) => row.host_id));
    }
    return heldElsewhere;
  }

  /**
   * The hosts whose stream rows name `instanceId`, with their stream ids: what the instance must hold
   * in memory. In host id order; `page` reads at most `limit` rows after `afterHostId` (keyset paging,
   * so a pass over 18,000 streams is many short statements).
   */
  async streamsOf(instanceId: string, page?: { afterHostId: string; limit: number }): Promise<Array<{ hostId: string; streamId: string }>> {
    let query = this.#db.selectFrom('host_streams').select(['host_id', 'stream_id']).where('instance_id', '=', instanceId);
    if (page !== undefined) query = query.where('host_id', '>', page.afterHostId).orderBy('host_id').limit(page.limit);
    const rows = await query.execute();
    return rows.map((row) => ({ hostId: row.host_id, streamId: row.stream_id }));
  }

  /** The instance whose row holds the host's stream now, or undefined. */
  async holderOf(hostId: string): Promise<string | undefined> {
    return (await this.#db.selectFrom('host_streams').select('instance_id').where('host_id', '=', hostId).executeTakeFirst())?.instance_id;
  }

  /**
   * Forgets the host's stream `streamId` of `instanceId`. False when its row no longer names that
   * stream: another instance, or a newer stream here, holds the host now, so the host is not offline.
   */
  async releaseStream(hostId: string, instanceId: string, streamId: string): Promise<boolean> {
    const deleted = await this.#db
      .deleteFrom('host_streams')
      .where('host_id', '=', hostId)
      .where('instance_id', '=', instanceId)
      .where('stream_id', '=', streamId)
      .executeTakeFirst();
    return Number(deleted.numDeletedRows) === 1;
  }

  /**
   * releaseStream for many streams of `instanceId` at once, HOSTS_PER_STATEMENT per statement (a
   * fleet whose connections dropped together). Returns the hosts whose row named their stream and
   * is gone; the others are held by another instance or a newer stream here. Stream ids are unique
   * (randomUUID per stream), so matching host and stream ids each against their lists matches the pairs.
   */
  async releaseStreams(streams: ReadonlyArray<{ hostId: string; streamId: string }>, instanceId: string): Promise<Set<string>> {
    const released = new Set<string>();
    for (const chunk of slices(streams, HOSTS_PER_STATEMENT)) {
      const rows = await this.#db
        .deleteFrom('host_streams')
        .where('instance_id', '=', instanceId)
        .where('host_id', 'in', chunk.map((stream) => stream.hostId))
        .where('stream_id', 'in', chunk.map((stream) => stream.streamId))
        .returning('host_id')
        .execute();
      for (const row of rows) released.add(row.host_id);
    }
    return released;
  }

  /** The hosts among `hostIds` whose stream is held by an instance alive at `now`: the ones online, on any instance. */
  async streamingAmong(hostIds: readonly string[], now: number): Promise<Set<string>> {
    if (hostIds.length === 0) return new Set();
    let query = liveStreams(this.#db, now);
    // A list longer than one statement names reads every live stream instead.
    if (hostIds.length <= HOSTS_PER_STATEMENT) query = query.where('host_streams.host_id', 'in', hostIds);
    const streaming = new Set((await query.execute()).map((row) => row.host_id));
    return hostIds.length <= HOSTS_PER_STATEMENT ? streaming : new Set(hostIds.filter((hostId) => streaming.has(hostId)));
  }

  /** The hosts whose stream row names an instance whose lease expired by `now` (or that left no row): what the lost-stream pass will remove. Reads only, locks nothing. */
  async lostHosts(now: number): Promise<string[]> {
    const rows = await this.#db.selectFrom('host_streams').select('host_id').where(heldByNoLiveInstance(now)).execute();
    return rows.map((row) => row.host_id);
  }

  /**
   * The lost-stream pass: deletes the stream rows of instances whose lease expired by `now` (or
   * that left no row), and those instances' rows; returns the hosts whose stream was lost, each
   * once even when two instances run the pass at once (a DELETE … RETURNING hands each row to one).
   */
  lostStreams(now: number): Promise<string[]> {
    return atomically(this.#db, async (db) => {
      const lost = await db.deleteFrom('host_streams').where(heldByNoLiveInstance(now)).returning('host_id').execute();
      await db.deleteFrom('appliance_instances').where('lease_expires_at', '<=', now).execute();
      return lost.map((row) => row.host_id);
    });
  }

  /**
   * Runs `work` unless another instance is running the work of the same `lockKey` now: true when
   * it ran, false when skipped. On PostgreSQL a session advisory lock (pg_try_advisory_lock) on one
   * pooled connection held for the pass, so it is released when the pass ends or that connection
   * is lost; on SQLite `work` runs at once (one instance). `lockKey` is a 64-bit key of our own.
   */
  async exclusively(lockKey: bigint, work: () => Promise<void>): Promise<boolean> {
    if (this.#dialect === 'sqlite') {
      await work();
      return true;
    }
    return this.#db.connection().execute(async (connection) => {
      const { rows } = await sql<{ locked: boolean }>`SELECT pg_try_advisory_lock(${lockKey.toString()}::bigint) AS locked`.execute(connection);
      if (!rows[0]!.locked) return false;
      try {
        await work();
        return true;
      } finally {
        await sql`SELECT pg_advisory_unlock(${lockKey.toString()}::bigint)`.execute(connection);
      }
    });
  }

  /**
   * The database server's clock now, in ms since the epoch: leases are written and compared in it,
   * so instances on machines whose clocks disagree still agree on who is alive.
   */
  async databaseTime(): Promise<number> {
    const { rows } = await (this.#dialect === 'sqlite'
      ? sql<{ now: number }>`SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS now`
      : sql<{ now: number }>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS now`
    ).execute(this.#db);
    return Number(rows[0]!.now);
  }

  /**
   * Tells every listening instance `payload` (a JSON text under 8000 bytes, PostgreSQL's NOTIFY
   * limit) on CLUSTER_CHANNEL. Delivered after this statement's transaction commits; on SQLite a no-op.
   */
  async notify(payload: string): Promise<void> {
    if (this.#dialect === 'sqlite') return;
    await sql`SELECT pg_notify(${CLUSTER_CHANNEL}, ${payload})`.execute(this.#db);
  }
}
