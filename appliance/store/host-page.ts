import { sql, type Expression, type ExpressionBuilder, type ExpressionWrapper, type QueryCreator, type SelectQueryBuilder, type SqlBool } from 'kysely';
import type { HostStatus } from '../hosts/status.ts';
import type { Host } from '../model/host.ts';
import { liveStreams } from './appliance-instances.ts';
import type { DialectName } from './dialects.ts';
import type { Schema } from './schema.ts';

/*
 * One page of an organisation's hosts for the admin's host list (issue 13): filtered, searched and
 * sorted in the database, each host's status computed there too, so 20,000 hosts are paged without
 * reading them all. HostStore.page runs it.
 */

/** What a page may be sorted by: last_seen is the last heartbeat, version the agent's, enrolled the enrolment time. */
export const HOST_SORT_KEYS = ['hostname', 'status', 'last_seen', 'os', 'version', 'enrolled'] as const;
export type HostSortKey = (typeof HOST_SORT_KEYS)[number];

/** A page's order; hosts that tie are ordered by id, so pages neither repeat nor skip a host. */
export interface HostSort {
  readonly key: HostSortKey;
  readonly descending: boolean;
}

/** Which hosts a page draws from; every field given must match. */
export interface HostFilter {
  readonly status?: HostStatus;
  /** The OS family as the agent reports it (linux, windows, darwin). */
  readonly os?: string;
  /** Hosts carrying the tag; with `value`, with that value. */
  readonly tag?: { readonly key: string; readonly value?: string };
  readonly agentVersion?: string;
  /** A part of the hostname, in any case; % and _ are themselves, not wildcards. */
  readonly hostnameContains?: string;
}

export interface HostPage {
  /** The page's hosts in the sort's order. */
  readonly hosts: Host[];
  /** The ids among them that were online, read in the same statement as the statuses filtered and sorted on. */
  readonly online: ReadonlySet<string>;
  /** How many hosts match the filter, over all pages. */
  readonly total: number;
}

type HostsBuilder = ExpressionBuilder<Schema, 'hosts'>;

/** Whether the host's stream is held by a live instance at `now`: PresenceService's "online" (liveStreams), for the row at hand. */
export function streamingSql(db: QueryCreator<Schema>, eb: HostsBuilder, now: number): ExpressionWrapper<Schema, 'hosts', SqlBool> {
  return eb.exists(liveStreams(db, now).where('host_streams.host_id', '=', eb.ref('hosts.id')));
}

/**
 * hosts/status.ts hostStatus() as SQL, for the row at hand: deleted first, then an active host's
 * identity conflict, then the approval unless active, then online (a live stream), never-connected
 * (no heartbeat ever) or offline. test/store-hosts-page.test.ts proves it equal to hostStatus() for
 * every combination of their inputs on both backends.
 */
export function hostStatusSql(db: QueryCreator<Schema>, eb: HostsBuilder, now: number): ExpressionWrapper<Schema, 'hosts', HostStatus> {
  const status = (name: HostStatus) => sql.lit<HostStatus>(name);
  return eb
    .case()
    .when('hosts.deleted_at', 'is not', null)
    .then(status('deleted'))
    .when(eb.and([eb('hosts.identity_state', '=', sql.lit('conflict')), eb('hosts.approval', '=', sql.lit('active'))]))
    .then(status('identity-conflict'))
    .when('hosts.approval', '!=', sql.lit('active'))
    // pending, rejected or revoked: the approval is the status.
    .then(eb.ref('hosts.approval').$castTo<HostStatus>())
    .when(streamingSql(db, eb, now))
    .then(status('online'))
    .when('hosts.last_heartbeat_at', 'is', null)
    .then(status('never-connected'))
    .else(status('offline'))
    .end();
}

/**
 * `text` as a LIKE pattern matching it anywhere, its wildcards and the escape character escaped
 * (the statement says ESCAPE '\').
 */
function containing(text: string): string {
  return `%${text.replace(/[\\%_]/g, '\\$&')}%`;
}

/** The organisation's hosts that are not deleted and match `filter`; `now` is the lease clock "online" is judged in. */
export function matchingHosts(db: QueryCreator<Schema>, dialect: DialectName, orgId: string, filter: HostFilter, now: number) {
  return db
    .selectFrom('hosts')
    .where('hosts.org_id', '=', orgId)
    .where('hosts.deleted_at', 'is', null)
    .where((eb) => {
      const conditions: Expression<SqlBool>[] = [];
      if (filter.status !== undefined) conditions.push(eb(hostStatusSql(db, eb, now), '=', filter.status));
      if (filter.os !== undefined) conditions.push(eb('hosts.os', '=', filter.os));
      if (filter.agentVersion !== undefined) conditions.push(eb('hosts.agent_version', '=', filter.agentVersion));
      if (filter.tag !== undefined) conditions.push(hasTag(dialect, filter.tag));
      // lower() on both sides: each backend folds case alike on the hostname and the search.
      if (filter.hostnameContains !== undefined) conditions.push(sql<SqlBool>`lower(hosts.hostname) LIKE lower(${containing(filter.hostnameContains)}) ESCAPE '\\'`);
      return eb.and(conditions);
    });
}

/** Whether the host's tags (a JSON object of name → text) hold `tag`: each backend's function listing a JSON object's entries as key and text value. */
function hasTag(dialect: DialectName, tag: NonNullable<HostFilter['tag']>): Expression<SqlBool> {
  const entries = dialect === 'sqlite' ? sql`json_each(hosts.tags)` : sql`json_each_text(hosts.tags::json)`;
  const value = tag.value === undefined ? sql`` : sql` AND tag.value = ${tag.value}`;
  return sql<SqlBool>`EXISTS (SELECT 1 FROM ${entries} AS tag WHERE tag.key = ${tag.key}${value})`;
}

/** What each sort key orders by, for the row at hand. */
const SORTED_BY: Record<HostSortKey, (db: QueryCreator<Schema>, eb: HostsBuilder, now: number) => Expression<unknown>> = {
  // Without case: Windows reports its hostnames in upper case, Linux in lower.
  hostname: (_db, eb) => eb.fn('lower', ['hosts.hostname']),
  // By the status's name: identity-conflict, never-connected, offline, online, pending, rejected, revoked.
  status: hostStatusSql,
  last_seen: (_db, eb) => eb.ref('hosts.last_heartbeat_at'),
  os: (_db, eb) => eb.ref('hosts.os'),
  // As text: 1.10.0 sorts before 1.9.0.
  version: (_db, eb) => eb.ref('hosts.agent_version'),
  enrolled: (_db, eb) => eb.ref('hosts.enrolled_at'),
};

/**
 * `query` ordered by `sort`, then by id. A missing value (a host never heard from has no last_seen)
 * sorts lowest on both backends (SQLite and PostgreSQL place NULL differently unless told).
 * Descending reverses the whole order, the id tie-break included.
 */
export function sortedHosts<O>(db: QueryCreator<Schema>, query: SelectQueryBuilder<Schema, 'hosts', O>, sort: HostSort, now: number): SelectQueryBuilder<Schema, 'hosts', O> {
  return query
    .orderBy((eb) => SORTED_BY[sort.key](db, eb, now), (order) => (sort.descending ? order.desc().nullsLast() : order.asc().nullsFirst()))
    .orderBy('hosts.id', sort.descending ? 'desc' : 'asc');
}
