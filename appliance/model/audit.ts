import type { ErrorCode } from '../../common/errors.ts';

/**
 * How an audited request came: the local CLI credential, an API login session, a console session
 * (or a login to open one of these two), or no valid credential at all.
 */
export type AuditActorKind = 'cli' | 'api-session' | 'console' | 'anonymous';
export const AUDIT_ACTOR_KINDS: readonly AuditActorKind[] = ['cli', 'api-session', 'console', 'anonymous'];

/** 'ok' below HTTP 400, 'refused' for the caller's error (4xx), 'failed' for ours (5xx). */
export type AuditOutcome = 'ok' | 'refused' | 'failed';
export const AUDIT_OUTCOMES: readonly AuditOutcome[] = ['ok', 'refused', 'failed'];

/** One admin action or security event as recorded (issue 13, "Audit log"): who, what, when, from where, and how it ended. */
export interface AuditEventInput {
  orgId: string;
  /** ms since the epoch. */
  at: number;
  /** The username, the username a login tried, or '' when unknown. */
  actor: string;
  actorKind: AuditActorKind;
  /** The caller's IPv4 address or IPv6 /64. */
  source: string;
  /** A stable name derived from the route (audit/action.ts): 'hosts.approve', 'auth.login'. */
  action: string;
  /** The route's parameters ({id: 'hst_…'}); never a body. */
  target: Readonly<Record<string, string>>;
  outcome: AuditOutcome;
  /** The catalogue code the request was answered with; null when it succeeded or named none. */
  errorCode: ErrorCode | null;
  /** The HTTP status answered. */
  status: number;
}

export interface AuditEvent extends AuditEventInput {
  /** Grows with every event (never reused): the cursor of a page. */
  id: number;
}

/** Which events a listing or an export returns; every field narrows it. */
export interface AuditFilter {
  actor?: string;
  action?: string;
  outcome?: AuditOutcome;
  /** ms since the epoch, inclusive. */
  since?: number;
  /** ms since the epoch, exclusive. */
  until?: number;
  /** Only events older than this id: the `next` cursor of the page before. */
  beforeId?: number;
}
