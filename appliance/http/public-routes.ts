import type { FastifyInstance } from 'fastify';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { HttpContext } from './context.ts';

/** Unauthenticated endpoints: liveness and the public key agents' JWTs can be checked against. */
export async function publicRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  // 200 while the database takes writes; 503 while it refuses them (full, read-only, I/O errors),
  // so a load balancer or monitor sees the degraded appliance. It recovers by itself: the store
  // layer probes with one small write until one succeeds.
  app.get('/healthz', {
    schema: {
      response: {
        200: { type: 'object', required: ['status', 'version'], properties: { status: { type: 'string', const: 'ok' }, version: { type: 'string' }, online_hosts: { type: 'integer' } } },
        503: {
          type: 'object',
          required: ['status', 'version', 'reason', 'since'],
          properties: { status: { type: 'string', const: 'degraded' }, version: { type: 'string' }, reason: { type: 'string' }, message: { type: 'string' }, since: { type: 'string', format: 'date-time' }, online_hosts: { type: 'integer' } },
        },
      },
    },
    handler: async (_request, reply) => {
      const storage = ctx.stores.health.state;
      if (storage.status === 'ok') return { status: 'ok', version: PRODUCT_VERSION, online_hosts: ctx.presence.size };
      return reply.code(503).send({ status: 'degraded', version: PRODUCT_VERSION, reason: storage.reason, message: storage.message, since: new Date(storage.sinceMs).toISOString(), online_hosts: ctx.presence.size });
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
