import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { authenticateApiToken, login } from '../admin/credentials.ts';
import { LoginThrottle } from '../admin/login-throttle.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { HttpContext } from './context.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The admin behind the request's credential, set by the admin auth hook. */
    adminName: string;
  }
}

/** Requires an admin bearer credential on every route registered after it in this scope. */
export async function requireAdmin(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  app.decorateRequest('adminName', '');
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
    if (!match?.[1]) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'an `Authorization: Bearer` admin credential is required');
    request.adminName = authenticateApiToken(ctx.stores.adminCredentials, match[1], Date.now()).username;
  });
}

/** POST /api/v1/auth/login: a session token for a username and password, throttled per account and per source address. */
export async function loginRoute(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const deps = { store: ctx.stores.adminCredentials, throttle: new LoginThrottle(), log: ctx.log.child({ area: 'admin-login' }) };
  app.post<{ Body: { username: string; password: string } }>('/api/v1/auth/login', {
    schema: {
      body: {
        type: 'object',
        required: ['username', 'password'],
        additionalProperties: false,
        properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 256 } },
      },
      response: { 200: { type: 'object', required: ['token', 'expires_at'], properties: { token: { type: 'string' }, expires_at: { type: 'string' } } } },
    },
    handler: async (request) => {
      // An IPv4 address or an IPv6 /64, so a site cannot escape the source lock by rotating addresses.
      const source = peerSource(`[${request.ip}]:0`);
      const session = await login(deps, { username: request.body.username, password: request.body.password, source }, Date.now());
      ctx.log.info({ username: request.body.username, source }, 'admin logged in');
      return { token: session.token, expires_at: new Date(session.expiresAt).toISOString() };
    },
  });
}
