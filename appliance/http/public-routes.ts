import type { FastifyInstance } from 'fastify';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { HttpContext } from './context.ts';

/** Whether this instance hears the other instances (PostgreSQL only): ClusterService.hearing. */
const INSTANCES_SCHEMA = {
  type: 'object',
  required: ['listening'],
  properties: { listening: { type: 'boolean' }, not_listening_since: { type: 'string', format: 'date-time' } },
} as const;

/** Unauthenticated endpoints: liveness and the public key agents' JWTs can be checked against. */
export async function publicRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  // 200 while the database takes writes; 503 while it refuses them (full, read-only, I/O errors),
  // so a load balancer or monitor sees the degraded appliance. It recovers by itself: the store
  // layer probes with one small write until one succeeds. On PostgreSQL `instances` says whether
  // this instance hears the others (an alert, not a 503: it still serves its agents correctly, and
  // what it misses waits for the next resync).
  app.get('/healthz', {
    schema: {
      response: {
        200: { type: 'object', required: ['status', 'version'], properties: { status: { type: 'string', const: 'ok' }, version: { type: 'string' }, online_hosts: { type: 'integer' }, instances: INSTANCES_SCHEMA } },
        503: {
          type: 'object',
          required: ['status', 'version', 'reason', 'since'],
          properties: { status: { type: 'string', const: 'degraded' }, version: { type: 'string' }, reason: { type: 'string' }, message: { type: 'string' }, since: { type: 'string', format: 'date-time' }, online_hosts: { type: 'integer' }, instances: INSTANCES_SCHEMA },
        },
      },
    },
    handler: async (_request, reply) => {
      const storage = ctx.stores.health.state;
      const hearing = ctx.services.cluster.hearing;
      const instances = hearing && { listening: hearing.listening, ...(!hearing.listening && { not_listening_since: new Date(hearing.sinceMs).toISOString() }) };
      const common = { version: PRODUCT_VERSION, online_hosts: ctx.presence.size, ...(instances && { instances }) };
      if (storage.status === 'ok') return { status: 'ok', ...common };
      return reply.code(503).send({ status: 'degraded', reason: storage.reason, message: storage.message, since: new Date(storage.sinceMs).toISOString(), ...common });
    },
  });
  app.get('/.well-known/jwks.json', {
    schema: {
      response: {
        200: {
          type: 'object',
          required: ['keys'],
          properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: { type: 'string' } } } },
        },
      },
    },
    handler: async () => ({ keys: [ctx.jwtKey.publicJwk] }),
  });
}
