import { sql } from 'kysely';
import type { VitalsSample } from '../model/host.ts';
import { compiledOncePerLength } from './compiled-query.ts';
import { powerOfTwoRuns } from './runs.ts';
import { inSlices } from './slices.ts';
import type { Executor } from './unit-of-work.ts';

/** Samples deleted per statement by prune: a few ms of SQLite work, so heartbeats wait no longer. */
const PRUNE_SLICE = 2_000;

export type { VitalsSample } from '../model/host.ts';

/** Rows per INSERT: 7 bound values each, far below SQLite's 32,766 and PostgreSQL's 65,535 parameters. */
const VITALS_ROWS_PER_STATEMENT = 512;

// Every flush of heartbeats runs it, once per run of samples (powerOfTwoRuns): built once per run length.
const insertSamples = compiledOncePerLength((db, samples: readonly VitalsSample[]) =>
  db.insertInto('host_vitals').values(samples.map((sample) => ({
    host_id: sample.hostId,
    received_at: sample.receivedAt,
    agent_timestamp: sample.agentTimestamp,
    cpu_percent: sample.cpuPercent,
    memory_percent: sample.memoryPercent,
    disk_percent: sample.diskPercent,
    uptime_seconds: sample.uptimeSeconds,
  }))),
);

/** Owns the host_vitals table: the heartbeat history, kept for a bounded time. */
/** Vitals as chart columns: equal-length arrays, times in ms since the epoch, percentages or null. */
export interface VitalsSeries {
  at: number[];
  cpu: Array<number | null>;
  memory: Array<number | null>;
  disk: Array<number | null>;
}

export class HostVitalsStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** Inserts the samples, in multi-row statements of at most VITALS_ROWS_PER_STATEMENT rows. */
  async insertMany(samples: readonly VitalsSample[]): Promise<void> {
    for (const run of powerOfTwoRuns(samples, VITALS_ROWS_PER_STATEMENT)) {
      await insertSamples(this.#db, run);
    }
  }

  /** The newest samples of a host, newest first. */
  async recent(hostId: string, limit: number): Promise<VitalsSample[]> {
    const rows = await this.#db.selectFrom('host_vitals').selectAll().where('host_id', '=', hostId).orderBy('received_at', 'desc').limit(limit).execute();
    return rows.map((row) => ({
      hostId: row.host_id,
      receivedAt: row.received_at,
      agentTimestamp: row.agent_timestamp,
      cpuPercent: row.cpu_percent,
      memoryPercent: row.memory_percent,
      diskPercent: row.disk_percent,
      uptimeSeconds: row.uptime_seconds,
    }));
  }

  /**
   * A host's vitals from `since` to `until` (ms since the epoch) averaged into buckets of `bucketMs`,
   * oldest first, as columns for a chart: `at` is each bucket's newest sample time, the percentages its
   * averages (null where no sample reported one). One GROUP BY over the (host_id, received_at) index:
   * a week of 30 s samples is at most `(until - since) / bucketMs` rows, whatever the sample count.
   */
  async series(hostId: string, since: number, until: number, bucketMs: number): Promise<VitalsSeries> {
    const rows = await this.#db
      .selectFrom('host_vitals')
      .where('host_id', '=', hostId)
      .where('received_at', '>=', since)
      .where('received_at', '<=', until)
      // Whole buckets on both backends (PostgreSQL divides its BIGINTs whole; SQLite may get the numbers as REAL).
      .select((eb) => [
        sql<number>`CAST((received_at - ${since}) / ${bucketMs} AS INTEGER)`.as('bucket'),
        eb.fn.max('received_at').as('at'),
        eb.fn.avg<number | null>('cpu_percent').as('cpu'),
        eb.fn.avg<number | null>('memory_percent').as('memory'),
        eb.fn.avg<number | null>('disk_percent').as('disk'),
      ])
      .groupBy('bucket')
      .orderBy('bucket')
      .execute();
    const number = (value: number | string | null): number | null => (value === null ? null : Math.round(Number(value) * 10) / 10);
    return { at: rows.map((row) => Number(row.at)), cpu: rows.map((row) => number(row.cpu)), memory: rows.map((row) => number(row.memory)), disk: rows.map((row) => number(row.disk)) };
  }

  /**
   * Deletes samples received before `cutoff` (ms since the epoch), oldest first, about PRUNE_SLICE
   * at a time with the event loop free between slices (inSlices); returns how many. A slice deletes
   * the samples older than the PRUNE_SLICE-th oldest (a range of the host_vitals_time index: the
   * table has no key of its own); when they all share one instant, that instant's samples (at most
   * one per host).
   */
  async prune(cutoff: number): Promise<number> {
    return inSlices(async () => {
      const edge = await this.#db.selectFrom('host_vitals').select('received_at').where('received_at', '<', cutoff).orderBy('received_at').limit(1).offset(PRUNE_SLICE).executeTakeFirst();
      if (edge === undefined) return { affected: await this.#deleteWhere('<', cutoff), more: false };
      const affected = await this.#deleteWhere('<', Number(edge.received_at));
      return { affected: affected > 0 ? affected : await this.#deleteWhere('=', Number(edge.received_at)), more: true };
    });
  }

  async #deleteWhere(operator: '<' | '=', receivedAt: number): Promise<number> {
    const result = await this.#db.deleteFrom('host_vitals').where('received_at', operator, receivedAt).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
