import type { FastifyInstance } from 'fastify';
import type { HostDecision } from '../hosts/decide.ts';
import type { HostStatus } from '../hosts/status.ts';
import { HOST_SORT_KEYS, type HostFilter, type HostSort, type HostSortKey } from '../store/hosts.ts';
import { taskSchema, taskView } from './admin-tasks.ts';
import { hostIdentitySchema, hostIdentityView } from './admin-host-identity.ts';
import type { HttpContext } from './context.ts';
import { hostIdParams, hostSchema, hostView, hostViews, hostViewsOnline, pageLimitSchema } from './views.ts';

const vitalsSchema = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      received_at: { type: 'string' },
      cpu_percent: { type: 'number' },
      memory_percent: { type: 'number' },
      disk_percent: { type: 'number' },
      uptime_seconds: { type: 'integer' },
    },
  },
} as const;

/** Hosts per page when a paged listing names no limit. */
const DEFAULT_HOST_PAGE = 50;

/** A paged listing's query: the values are text (the server does not coerce types), numbers in the handler. */
export interface HostListQuery {
  limit?: string;
  offset?: string;
  status?: HostStatus;
  os?: string;
  tag?: string;
  version?: string;
  q?: string;
  sort?: string;
}

const bounded = (maxLength: number) => ({ type: 'string', minLength: 1, maxLength }) as const;

/** Every host status but deleted (deleted hosts are never listed). */
const LISTED_STATUSES = hostSchema.properties.status.enum.filter((status) => status !== 'deleted');

export const hostListQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    limit: pageLimitSchema,
    offset: { type: 'string', pattern: '^(0|[1-9][0-9]{0,8})$' },
    status: { type: 'string', enum: LISTED_STATUSES },
    // The bounds of what an agent may report (enrolment/register-input.ts).
    os: bounded(32),
    // NAME (any value) or NAME=VALUE; the name ends at the first "=".
    tag: bounded(64 + 1 + 256),
    version: bounded(64),
    q: bounded(253),
    // A sort key, "-" before it for descending.
    sort: { type: 'string', enum: HOST_SORT_KEYS.flatMap((key) => [key, `-${key}`]) },
  },
} as const;

export function hostFilter(query: HostListQuery): HostFilter {
  const equals = query.tag?.indexOf('=') ?? -1;
  const tag = query.tag === undefined ? undefined : equals < 0 ? { key: query.tag } : { key: query.tag.slice(0, equals), value: query.tag.slice(equals + 1) };
  return {
    ...(query.status !== undefined && { status: query.status }),
    ...(query.os !== undefined && { os: query.os }),
    ...(tag !== undefined && { tag }),
    ...(query.version !== undefined && { agentVersion: query.version }),
    ...(query.q !== undefined && { hostnameContains: query.q }),
  };
}

/** The order a listing asked for; enrolment order (the unpaged listing's) when it named none. */
export function hostSort(sort: string | undefined): HostSort {
  if (sort === undefined) return { key: 'enrolled', descending: false };
  const descending = sort.startsWith('-');
  return { key: (descending ? sort.slice(1) : sort) as HostSortKey, descending };
}

export async function adminHostRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { stores, services, orgId } = ctx;

  app.get<{ Querystring: HostListQuery }>('/api/v1/hosts', {
    schema: { querystring: hostListQuery, response: { 200: { type: 'array', items: hostSchema } } },
    handler: async (request, reply) => {
      const query = request.query;
      // Without any paging, filter or sort: every host, as the CLI reads them.
      if (Object.keys(query).length === 0) return hostViews(await services.hosts.list(orgId), services.presence);
      const limit = query.limit === undefined ? DEFAULT_HOST_PAGE : Number(query.limit);
      const page = await services.hosts.page(orgId, hostFilter(query), hostSort(query.sort), limit, Number(query.offset ?? 0));
      reply.header('x-total-count', String(page.total));
      return hostViewsOnline(page.hosts, page.online);
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/hosts/:id', {
    schema: { params: hostIdParams, response: { 200: { type: 'object', properties: { ...hostSchema.properties, recent_vitals: vitalsSchema, pending_uninstall: { anyOf: [taskSchema, { type: 'null' }] }, ...hostIdentitySchema } } } },
    handler: async (request) => {
      const host = await services.hosts.hostOfOrg(orgId, request.params.id, { includeDeleted: true });
      const recent = (await stores.vitals.recent(host.id, 20)).map((sample) => ({
        received_at: new Date(sample.receivedAt).toISOString(),
        cpu_percent: sample.cpuPercent,
        memory_percent: sample.memoryPercent,
        disk_percent: sample.diskPercent,
        uptime_seconds: sample.uptimeSeconds,
      }));
      // A requested uninstall waits for the agent (with an expiry): the admin sees where it stands.
      const uninstall = await services.tasks.unfinished(host.id, 'agent_uninstall');
      return { ...(await hostView(host, services.presence)), recent_vitals: recent, pending_uninstall: uninstall ? taskView(uninstall) : null, ...(await hostIdentityView(stores, host)) };
    },
  });

  for (const decision of ['approve', 'reject', 'revoke'] as const satisfies readonly HostDecision[]) {
    app.post<{ Params: { id: string } }>(`/api/v1/hosts/:id/${decision}`, {
      schema: { params: hostIdParams, response: { 200: hostSchema } },
      handler: async (request) => hostView(await services.hosts.decide(orgId, request.params.id, decision, request.adminName, Date.now()), services.presence),
    });
  }

  app.delete<{ Params: { id: string }; Querystring: { uninstall?: string } }>('/api/v1/hosts/:id', {
    schema: {
      params: hostIdParams,
      querystring: { type: 'object', additionalProperties: false, properties: { uninstall: { type: 'string', enum: ['true', 'false'] } } },
      response: { 200: { type: 'object', required: ['host'], properties: { host: hostSchema, uninstall: { anyOf: [taskSchema, { type: 'null' }] } } } },
    },
    handler: async (request) => {
      const outcome = await services.hosts.delete(orgId, request.params.id, { uninstall: request.query.uninstall === 'true' }, request.adminName, Date.now());
      return { host: await hostView(outcome.host, services.presence), uninstall: outcome.uninstall ? taskView(outcome.uninstall) : null };
    },
  });
}
