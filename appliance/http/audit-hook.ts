import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { STATUS, type CtOpsError, type ErrorCode } from '../../common/errors.ts';
import { CLI_TOKEN_LABEL, CONSOLE_SESSION_LABEL } from '../admin/accounts.ts';
import { auditAction } from '../audit/action.ts';
import { AuditFloodGate } from '../audit/flood-gate.ts';
import type { AdminApiToken } from '../model/admin.ts';
import type { AuditActorKind, AuditEventInput, AuditOutcome } from '../model/audit.ts';
import { accessOf, loginSource } from './admin-auth.ts';
import type { HttpContext } from './context.ts';
import { catalogueError } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * The catalogue code the request was answered with, for the audit log: set for every error thrown
     * to fastify (its onError hook, before the scope's error handler renders it); a handler that
     * catches an error and answers it itself (a form shown again with the error) sets it too.
     */
    answeredError: ErrorCode | undefined;
  }
}

/** The two logins, recorded whatever their outcome, with the username tried as the actor. */
const LOGIN_ROUTES: ReadonlySet<string> = new Set(['POST /api/v1/auth/login', 'POST /console/login']);
/** Refusals of authentication and authorization: recorded on any admin or console route, reads included. */
const REFUSAL_CODES: ReadonlySet<ErrorCode> = new Set(['ERR_ADMIN_UNAUTHENTICATED', 'ERR_ADMIN_FORBIDDEN', 'ERR_ADMIN_LOCAL_ONLY', 'ERR_CSRF_INVALID', 'ERR_LOGIN_FAILED', 'ERR_LOGIN_LOCKED', 'ERR_PASSWORD_CHANGE_REQUIRED']);
const REFUSAL_STATUSES: ReadonlySet<number> = new Set([401, 403, 429]);
/** What a route parameter may take of a row: ids and usernames are far shorter; a malformed one is cut. */
const MAX_TARGET_VALUE = 256;
const MAX_ACTOR = 64;

/**
 * Records admin actions and security events in the audit log (AuditService) at the HTTP edge, once
 * each answer is sent, so the API, the CLI (its client) and the console are covered alike without any
 * service knowing. Registered at the root, before every route. Recorded, on /api/v1 and /console routes:
 * - every request whose route changes something or hands out a secret (accessOf 'write', and 'session'
 *   other than GET: password change, logout), whatever its outcome;
 * - both logins, success or failure, with the username tried as the actor;
 * - every refusal of authentication or authorization (REFUSAL_CODES, or a 401/403/429), reads included.
 * Not recorded: ordinary reads, agent downloads, /healthz, assets, CSP reports. Nothing of a body is
 * kept but a login's username. Refusals of callers without a credential pass an AuditFloodGate per
 * source first. Recording never fails the request: AuditService.record logs a storage failure.
 */
export async function auditRequests(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const gate = new AuditFloodGate(ctx.log.child({ area: 'audit' }));
  app.decorateRequest('answeredError', undefined);
  app.addHook('onError', async (request, _reply, error: FastifyError | CtOpsError) => {
    request.answeredError = catalogueError(error).code;
  });
  app.addHook('onResponse', async (request, reply) => {
    const credential = credentialOf(request);
    const now = Date.now();
    const event = auditEventOf(request, reply, credential, ctx.orgId, now);
    if (event === undefined) return;
    if (credential === undefined && event.outcome !== 'ok' && !gate.admit(event.source, now)) return;
    await ctx.services.audit.record(event);
  });
  app.addHook('onClose', async () => gate.close());
}

/** The credential the request was authenticated with: a console session, or the admin API's bearer. */
function credentialOf(request: FastifyRequest): AdminApiToken | undefined {
  return request.consoleAdmin ?? (request.admin as AdminApiToken | null | undefined) ?? undefined;
}

/** The event a request makes, or undefined when it is not one to record. */
function auditEventOf(request: FastifyRequest, reply: FastifyReply, credential: AdminApiToken | undefined, orgId: string, now: number): AuditEventInput | undefined {
  const pattern = request.routeOptions.url;
  if (pattern === undefined) return undefined;
  const action = auditAction(request.method, pattern);
  if (action === undefined) return undefined;
  const code = request.answeredError;
  const access = accessOf(request);
  const changes = access === 'write' || (access === 'session' && request.method !== 'GET' && request.method !== 'HEAD');
  const refused = (code !== undefined && REFUSAL_CODES.has(code)) || REFUSAL_STATUSES.has(reply.statusCode);
  if (!changes && !refused && !isLogin(request)) return undefined;
  return {
    orgId,
    at: now,
    actor: credential?.username ?? (isLogin(request) ? triedUsername(request) : ''),
    actorKind: actorKind(request, credential),
    source: loginSource(request),
    action,
    target: routeTarget(request.params),
    outcome: outcomeOf(code, reply.statusCode),
    errorCode: code ?? null,
    status: reply.statusCode,
  };
}

function isLogin(request: FastifyRequest): boolean {
  return LOGIN_ROUTES.has(`${request.method} ${request.routeOptions.url}`);
}

/** A login opens an API or a console session, and is counted as that kind whatever its outcome. */
function actorKind(request: FastifyRequest, credential: AdminApiToken | undefined): AuditActorKind {
  if (credential !== undefined) return credential.label === CLI_TOKEN_LABEL ? 'cli' : credential.label === CONSOLE_SESSION_LABEL ? 'console' : 'api-session';
  if (isLogin(request)) return request.routeOptions.url!.startsWith('/console/') ? 'console' : 'api-session';
  return 'anonymous';
}

/** The username a login tried (only that field of its body: never the password). */
function triedUsername(request: FastifyRequest): string {
  const username = (request.body as { username?: unknown } | undefined)?.username;
  return typeof username === 'string' ? username.slice(0, MAX_ACTOR) : '';
}

function routeTarget(params: unknown): Record<string, string> {
  return Object.fromEntries(Object.entries((params ?? {}) as Record<string, unknown>).map(([name, value]) => [name, String(value).slice(0, MAX_TARGET_VALUE)]));
}

/** The code's status when one was answered (a redirect to the login page is a refusal too), else the reply's. */
function outcomeOf(code: ErrorCode | undefined, status: number): AuditOutcome {
  const judged = code === undefined ? status : STATUS[code].http;
  return judged >= 500 ? 'failed' : judged >= 400 ? 'refused' : 'ok';
}
