import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { authenticateApiToken, CLI_TOKEN_LABEL, login, resetPassword } from '../admin/credentials.ts';
import { LoginThrottle } from '../admin/login-throttle.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { HttpContext } from './context.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /** The admin behind the request's credential, set by the admin auth hook. */
    adminName: string;
    /** True when the credential is the local admin CLI's (DATA_DIR/admin-cli.token), not a login session. */
    adminLocal: boolean;
  }
}

/** Requires an admin bearer credential on every route registered after it in this scope. */
export async function requireAdmin(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  app.decorateRequest('adminName', '');
  app.decorateRequest('adminLocal', false);
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
    if (!match?.[1]) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'an `Authorization: Bearer` admin credential is required');
    const credential = await authenticateApiToken(ctx.stores.adminCredentials, match[1], Date.now());
    request.adminName = credential.username;
    request.adminLocal = credential.label === CLI_TOKEN_LABEL;
  });
}

/** POST /api/v1/auth/login: a session token for a username and password, throttled per account and per source address. */
export async function loginRoute(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const deps = { store: ctx.stores.adminCredentials, throttle: new LoginThrottle(), log: ctx.log.child({ area: 'admin-login' }), dataDir: ctx.dataDir };
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

/**
 * POST /api/v1/admins/:username/reset-password: a new one-time password for that admin, in the
 * answer only (resetPassword; local CLI credential only). Errors: ERR_ADMIN_LOCAL_ONLY (403),
 * ERR_ADMIN_USER_NOT_FOUND (404).
 */
export async function adminPasswordRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const deps = { store: ctx.stores.adminCredentials, log: ctx.log.child({ area: 'admin-login' }), dataDir: ctx.dataDir };
  app.post<{ Params: { username: string } }>('/api/v1/admins/:username/reset-password', {
    schema: {
      params: { type: 'object', required: ['username'], properties: { username: { type: 'string', minLength: 1, maxLength: 64 } } },
      response: { 200: { type: 'object', required: ['username', 'password', 'sessions_ended'], properties: { username: { type: 'string' }, password: { type: 'string' }, sessions_ended: { type: 'integer' } } } },
    },
    handler: async (request) => {
      const reset = await resetPassword(deps, request.params.username, request.adminLocal);
      return { username: reset.username, password: reset.password, sessions_ended: reset.sessionsEnded };
    },
  });
}
