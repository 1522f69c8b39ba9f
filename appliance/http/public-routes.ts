import type { FastifyInstance } from 'fastify';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { HttpContext } from './context.ts';

/** Unauthenticated endpoints: liveness and the public key agents' JWTs can be checked against. */
export async function publicRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  app.get('/healthz', {
    schema: {
      response: {
        200: { type: 'object', required: ['status', 'version'], properties: { status: { type: 'string' }, version: { type: 'string' }, online_hosts: { type: 'integer' } } },
      },
    },
    handler: async () => ({ status: 'ok', version: PRODUCT_VERSION, online_hosts: ctx.presence.size }),
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
