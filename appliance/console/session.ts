import type { FastifyReply, FastifyRequest } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { CONSOLE_SESSION_LABEL, type AdminAccountService, type Session } from '../admin/accounts.ts';
import type { AdminApiToken } from '../model/admin.ts';

/**
 * The console's session cookie. `__Host-`: the browser accepts it only Secure, from this origin,
 * with Path=/ and no Domain, so no other host (a sibling subdomain) can set or toss it (RFC 6265bis
 * §4.1.3.2). HttpOnly (no script reads it), SameSite=Strict (no cross-site request carries it).
 */
export const SESSION_COOKIE = '__Host-ctops_session';
/** The CSRF secret's cookie (@fastify/csrf-protection, double submit), with the same attributes. */
export const CSRF_COOKIE = '__Host-ctops_csrf';
export const COOKIE_OPTIONS = { path: '/', httpOnly: true, secure: true, sameSite: 'strict' } as const;

/** A console session ends after this long without a request the admin made (OWASP session management: 15–30 min for high-value applications). */
export const IDLE_TIMEOUT_MS = 30 * 60_000;
/** last_used_at is written at most this often per session: a busy console writes once a minute, not per request. */
const TOUCH_GRANULARITY_MS = 60_000;
/**
 * Requests the page makes by itself (live refreshes after a fleet event) carry this header: they
 * prove the session is alive but are not the admin's doing, so they do not extend the idle time.
 */
export const BACKGROUND_HEADER = 'x-console-background';

/**
 * The live console session behind the request's cookie, checked for both timeouts: absolute
 * (accounts.ts SESSION_TTL_MS, the row's expiry) and idle (IDLE_TIMEOUT_MS since it last served the admin).
 * A request the admin made (`extendsIdle`) counts as use; the page's own live refreshes do not. Errors: ERR_ADMIN_UNAUTHENTICATED (no cookie, unknown,
 * expired, idle, disabled account, or not a console session).
 */
export async function consoleSession(accounts: AdminAccountService, request: FastifyRequest, now: number, extendsIdle: boolean): Promise<AdminApiToken> {
  const secret = request.cookies[SESSION_COOKIE];
  if (!secret) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'log in to the console');
  const session = await accounts.authenticate(secret, now);
  if (session.label !== CONSOLE_SESSION_LABEL) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'only a console session opens the console');
  if (idleTooLong(session, now)) {
    await accounts.logout(session);
    throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'the console session was idle for too long: log in again');
  }
  if (extendsIdle) await accounts.touch(session, now, TOUCH_GRANULARITY_MS);
  return session;
}

/**
 * Of the console sessions `sessionIds`, those still live at `now`: not logged out or ended by a
 * password change, within the absolute lifetime, of an enabled account, and not idle past
 * IDLE_TIMEOUT_MS (the rules consoleSession applies to a request). For the live streams (live.ts).
 */
export async function liveConsoleSessions(accounts: AdminAccountService, sessionIds: readonly string[], now: number): Promise<Set<string>> {
  const live = await accounts.liveCredentials(sessionIds, now);
  return new Set(live.filter((session) => session.label === CONSOLE_SESSION_LABEL && !idleTooLong(session, now)).map((session) => session.id));
}

/** The session served the admin last (or began) more than IDLE_TIMEOUT_MS before `now`. */
function idleTooLong(session: AdminApiToken, now: number): boolean {
  return now - (session.lastUsedAt ?? session.createdAt) > IDLE_TIMEOUT_MS;
}

/** Sets the session cookie for a new login; it expires with the session's absolute lifetime. */
export function setSessionCookie(reply: FastifyReply, session: Session, now: number): void {
  reply.setCookie(SESSION_COOKIE, session.token, { ...COOKIE_OPTIONS, maxAge: Math.floor((session.expiresAt - now) / 1000) });
  // A new session gets a new CSRF secret (the next page makes it): a token from before the login is worth nothing after.
  reply.clearCookie(CSRF_COOKIE, COOKIE_OPTIONS);
}

export function clearSessionCookies(reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, COOKIE_OPTIONS);
  reply.clearCookie(CSRF_COOKIE, COOKIE_OPTIONS);
}
