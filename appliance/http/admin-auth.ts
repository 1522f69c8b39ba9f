import type { FastifyInstance, FastifyRequest } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { API_SESSION_LABEL, API_TOKEN_LABEL, checkAccess, CLI_TOKEN_LABEL, CONSOLE_SESSION_LABEL, MAX_PASSWORD_LENGTH, USERNAME_PATTERN } from '../admin/accounts.ts';
import { ADMIN_ROLES, type AdminApiToken, type AdminRole } from '../model/admin.ts';
import { peerSource } from '../lib/peer-source.ts';
import type { HttpContext } from './context.ts';
import { iso } from './views.ts';

/**
 * What a route needs of its caller: 'read' any enabled account, 'write' an admin, 'session' only a
 * live credential (password change, logout), 'public' nothing (the console's login page and assets).
 */
export type RouteAccess = 'public' | 'session' | 'read' | 'write';

declare module 'fastify' {
  interface FastifyRequest {
    /** The credential the request authenticated with, set by the admin auth hook. */
    admin: AdminApiToken;
    /** The admin behind the request's credential. */
    adminName: string;
  }
  interface FastifyContextConfig {
    /** Overrides the access a route's method implies (GET/HEAD read, others write): see accessOf. */
    access?: RouteAccess;
  }
}

/**
 * What a request needs of its caller: the route's `config.access`, else 'read' for GET and HEAD and
 * 'write' for every other method. Deriving it from the method means no route can forget to declare
 * it; a GET that hands out a secret (a bundle's zip holds an enrolment token) declares 'write'.
 */
export function accessOf(request: FastifyRequest): RouteAccess {
  return request.routeOptions.config.access ?? (request.method === 'GET' || request.method === 'HEAD' ? 'read' : 'write');
}

/** An IPv4 address or an IPv6 /64, so a site cannot escape the login source lock by rotating addresses. */
export function loginSource(request: FastifyRequest): string {
  return peerSource(`[${request.ip}]:0`);
}

/**
 * Requires an admin bearer credential on every route registered after it in this scope, and the
 * access the route needs (accessOf, checkAccess). A console session (a cookie's secret) is not a
 * bearer credential: it would carry no CSRF protection here. Errors: ERR_ADMIN_UNAUTHENTICATED,
 * ERR_PASSWORD_CHANGE_REQUIRED, ERR_ADMIN_FORBIDDEN.
 */
export async function requireAdmin(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  app.decorateRequest('admin', null as unknown as AdminApiToken);
  app.decorateRequest('adminName', '');
  app.addHook('onRequest', async (request: FastifyRequest) => {
    const match = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '');
    if (!match?.[1]) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'an `Authorization: Bearer` admin credential is required');
    const credential = await ctx.services.accounts.authenticate(match[1], Date.now());
    if (credential.label === CONSOLE_SESSION_LABEL) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'a console session authenticates the console only');
    // Set before the access check: a refusal is audited with the admin it refused (http/audit-hook.ts).
    request.admin = credential;
    request.adminName = credential.username;
    // An API token's last use is shown to its owner (written at most once a minute).
    if (credential.label === API_TOKEN_LABEL) await ctx.services.accounts.touch(credential, Date.now(), 60_000);
    checkAccess(credential, accessOf(request));
  });
}

const passwordSchema = { type: 'string', minLength: 1, maxLength: MAX_PASSWORD_LENGTH } as const;
const usernameParams = { type: 'object', required: ['username'], properties: { username: { type: 'string', minLength: 1, maxLength: 64 } } } as const;
const oneTimePasswordSchema = {
  type: 'object',
  required: ['username', 'password', 'sessions_ended'],
  properties: { username: { type: 'string' }, password: { type: 'string' }, sessions_ended: { type: 'integer' } },
} as const;

/** POST /api/v1/auth/login: a bearer session token for a username and password, throttled per account and per source address. */
export async function loginRoute(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  app.post<{ Body: { username: string; password: string } }>('/api/v1/auth/login', {
    schema: {
      body: { type: 'object', required: ['username', 'password'], additionalProperties: false, properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: passwordSchema } },
      response: {
        200: { type: 'object', required: ['token', 'expires_at', 'must_change_password'], properties: { token: { type: 'string' }, expires_at: { type: 'string' }, must_change_password: { type: 'boolean' } } },
      },
    },
    handler: async (request) => {
      const session = await ctx.services.accounts.login({ username: request.body.username, password: request.body.password, source: loginSource(request) }, API_SESSION_LABEL, Date.now());
      return { token: session.token, expires_at: iso(session.expiresAt), must_change_password: session.mustChangePassword };
    },
  });
}

/**
 * The account routes of the admin API (inside requireAdmin's scope):
 * - POST /api/v1/auth/password {current_password, new_password}: the caller's own password
 *   (AdminAccountService.changePassword); its other sessions end.
 * - POST /api/v1/auth/logout: ends the caller's session.
 * - GET /api/v1/admins: every account.
 * - POST /api/v1/admins {username, role}, POST /api/v1/admins/:username/reset-password and
 *   /disable: local admin CLI credential only (ERR_ADMIN_LOCAL_ONLY).
 */
export async function adminAccountRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { accounts } = ctx.services;
  app.post<{ Body: { current_password: string; new_password: string } }>('/api/v1/auth/password', {
    config: { access: 'session' },
    schema: {
      body: { type: 'object', required: ['current_password', 'new_password'], additionalProperties: false, properties: { current_password: passwordSchema, new_password: passwordSchema } },
      response: { 200: { type: 'object', required: ['sessions_ended'], properties: { sessions_ended: { type: 'integer' } } } },
    },
    handler: async (request) => {
      if (request.admin.label === CLI_TOKEN_LABEL) throw new CtOpsError('ERR_ADMIN_LOCAL_ONLY', 'the local admin CLI credential has no password to change: use `ct-ops-appliance admin passwd NAME`');
      const ended = await accounts.changePassword(request.admin, { current: request.body.current_password, next: request.body.new_password, source: loginSource(request) }, Date.now());
      return { sessions_ended: ended };
    },
  });
  app.post('/api/v1/auth/logout', {
    config: { access: 'session' },
    schema: { response: { 204: { type: 'null' } } },
    handler: async (request, reply) => {
      await accounts.logout(request.admin);
      return reply.code(204).send();
    },
  });
  app.get('/api/v1/admins', {
    schema: {
      response: {
        200: {
          type: 'array',
          items: {
            type: 'object',
            required: ['username', 'role', 'disabled_at', 'must_change_password', 'created_at'],
            properties: { username: { type: 'string' }, role: { type: 'string' }, disabled_at: { type: ['string', 'null'] }, must_change_password: { type: 'boolean' }, created_at: { type: 'string' } },
          },
        },
      },
    },
    handler: async () =>
      (await accounts.list()).map((account) => ({
        username: account.username,
        role: account.role,
        disabled_at: iso(account.disabledAt),
        must_change_password: account.mustChangePassword,
        created_at: iso(account.createdAt),
      })),
  });
  app.post<{ Body: { username: string; role?: AdminRole } }>('/api/v1/admins', {
    schema: {
      body: {
        type: 'object',
        required: ['username'],
        additionalProperties: false,
        properties: { username: { type: 'string', pattern: USERNAME_PATTERN }, role: { type: 'string', enum: [...ADMIN_ROLES] } },
      },
      response: { 201: oneTimePasswordSchema },
    },
    handler: async (request, reply) => {
      const created = await accounts.create(request.admin, request.body.username, request.body.role ?? 'admin', Date.now());
      return reply.code(201).send({ username: created.username, password: created.password, sessions_ended: created.sessionsEnded });
    },
  });
  app.post<{ Params: { username: string } }>('/api/v1/admins/:username/reset-password', {
    schema: { params: usernameParams, response: { 200: oneTimePasswordSchema } },
    handler: async (request) => {
      const reset = await accounts.resetPassword(request.admin, request.params.username);
      return { username: reset.username, password: reset.password, sessions_ended: reset.sessionsEnded };
    },
  });
  app.post<{ Params: { username: string } }>('/api/v1/admins/:username/disable', {
    schema: { params: usernameParams, response: { 200: { type: 'object', required: ['username', 'credentials_ended'], properties: { username: { type: 'string' }, credentials_ended: { type: 'integer' } } } } },
    handler: async (request) => ({ username: request.params.username, credentials_ended: await accounts.disable(request.admin, request.params.username, Date.now()) }),
  });
}
