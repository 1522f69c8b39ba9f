import type { FastifyInstance } from 'fastify';
import type { HostDecision } from '../hosts/decide.ts';
import { taskSchema, taskView } from './admin-tasks.ts';
import { hostIdentitySchema, hostIdentityView } from './admin-host-identity.ts';
import type { HttpContext } from './context.ts';
import { hostIdParams, hostSchema, hostView, hostViews } from './views.ts';

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

export async function adminHostRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { stores, services, orgId } = ctx;

  app.get('/api/v1/hosts', {
    schema: { response: { 200: { type: 'array', items: hostSchema } } },
    handler: async () => hostViews(await services.hosts.list(orgId), services.presence),
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
