import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { decideHost, type HostDecision } from '../hosts/decide.ts';
import type { HttpContext } from './context.ts';
import { hostSchema, hostView } from './views.ts';

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: '^hst_[0-9a-f]{20}$' } } } as const;
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
  const { stores, presence, orgId } = ctx;
  const findHost = (id: string) => {
    const host = stores.hosts.get(id);
    if (!host || host.orgId !== orgId) throw new CtOpsError('ERR_HOST_NOT_FOUND', `no host ${id}`, { host_id: id });
    return host;
  };

  app.get('/api/v1/hosts', {
    schema: { response: { 200: { type: 'array', items: hostSchema } } },
    handler: async () => stores.hosts.list(orgId).map((host) => hostView(host, presence)),
  });

  app.get<{ Params: { id: string } }>('/api/v1/hosts/:id', {
    schema: { params: idParams, response: { 200: { type: 'object', properties: { ...hostSchema.properties, recent_vitals: vitalsSchema } } } },
    handler: async (request) => {
      const host = findHost(request.params.id);
      const recent = stores.vitals.recent(host.id, 20).map((sample) => ({
        received_at: new Date(sample.receivedAt).toISOString(),
        cpu_percent: sample.cpuPercent,
        memory_percent: sample.memoryPercent,
        disk_percent: sample.diskPercent,
        uptime_seconds: sample.uptimeSeconds,
      }));
      return { ...hostView(host, presence), recent_vitals: recent };
    },
  });

  for (const decision of ['approve', 'reject', 'revoke'] as const satisfies readonly HostDecision[]) {
    app.post<{ Params: { id: string } }>(`/api/v1/hosts/:id/${decision}`, {
      schema: { params: idParams, response: { 200: hostSchema } },
      handler: async (request) => hostView(decideHost(ctx, orgId, request.params.id, decision, request.adminName, Date.now()), presence),
    });
  }

  app.post<{ Params: { id: string } }>('/api/v1/hosts/:id/reload-config', {
    schema: { params: idParams, response: { 202: { type: 'object', required: ['command_id'], properties: { command_id: { type: 'string' } } } } },
    handler: async (request, reply) => {
      const host = findHost(request.params.id);
      const commandId = randomUUID();
      if (!presence.send(host.id, { command: { command_id: commandId, config_reload: {} } })) {
        throw new CtOpsError('ERR_HOST_NOT_CONNECTED', 'the host has no live agent stream to send the command on', { host_id: host.id });
      }
      ctx.log.info({ host_id: host.id, command_id: commandId, by: request.adminName }, 'config reload sent');
      reply.code(202);
      return { command_id: commandId };
    },
  });
}
