import type { FastifyInstance } from 'fastify';
import { runtimeReport } from '../health/event-loop-watch.ts';
import type { HttpContext } from './context.ts';

const ms = { type: 'number' } as const;
/** The shape of runtimeReport (health/event-loop-watch.ts). */
const runtimeSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['pid', 'uptime_secs', 'rss_mib', 'heap_used_mib', 'online_hosts', 'event_loop'],
  properties: {
    pid: { type: 'integer' },
    uptime_secs: { type: 'number' },
    rss_mib: { type: 'number' },
    heap_used_mib: { type: 'number' },
    online_hosts: { type: 'integer' },
    event_loop: {
      type: 'object',
      additionalProperties: false,
      required: ['sample_ms', 'window_secs', 'windows'],
      properties: {
        sample_ms: { type: 'integer' },
        window_secs: { type: 'integer' },
        windows: {
          type: 'array',
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['started_at', 'seconds', 'p50_ms', 'p99_ms', 'max_ms'],
            properties: { started_at: { type: 'string', format: 'date-time' }, seconds: ms, p50_ms: ms, p99_ms: ms, max_ms: ms },
          },
        },
      },
    },
  },
} as const;

/**
 * `GET /api/v1/appliance/runtime`: this process's memory, online hosts and event-loop delay in
 * 10-second windows over the last hour (`since`: only windows that end after it), so an admin (or
 * ct-ops-loadtest) sees how late the appliance answers. Each instance answers for itself.
 */
export async function adminRuntimeRoutes(app: FastifyInstance, { presence, loopWatch }: HttpContext): Promise<void> {
  app.get<{ Querystring: { since?: string } }>('/api/v1/appliance/runtime', {
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { since: { type: 'string', format: 'date-time' } } },
      response: { 200: runtimeSchema },
    },
    handler: async (request) => runtimeReport(presence.size, loopWatch, request.query.since === undefined ? 0 : Date.parse(request.query.since)),
  });
}
