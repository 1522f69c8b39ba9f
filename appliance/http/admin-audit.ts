import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { escapeUnsafeJson } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import { AUDIT_ACTOR_KINDS, AUDIT_OUTCOMES, type AuditEvent, type AuditFilter, type AuditOutcome } from '../model/audit.ts';
import type { HttpContext } from './context.ts';
import { iso, nullableString, pageLimitSchema, stringMap } from './views.ts';

/** Events per page when a listing names no limit. */
const DEFAULT_AUDIT_PAGE = 100;

/** An ISO 8601 date (UTC midnight) or date and time with its offset: no time read in the server's zone. */
const instant = { type: 'string', pattern: '^[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\\.[0-9]{1,3})?)?(Z|[+-][0-9]{2}:[0-9]{2}))?$' } as const;

export const filterProperties = {
  // '' finds the events whose actor is unknown (refused without a credential).
  actor: { type: 'string', maxLength: 64 },
  action: { type: 'string', pattern: '^[a-z0-9-]+(\\.[a-z0-9-]+)*$', maxLength: 128 },
  outcome: { type: 'string', enum: AUDIT_OUTCOMES },
  since: instant,
  until: instant,
  before: { type: 'string', pattern: '^[1-9][0-9]{0,15}$' },
} as const;

export interface AuditQuery {
  actor?: string;
  action?: string;
  outcome?: AuditOutcome;
  since?: string;
  until?: string;
  before?: string;
  limit?: string;
}

const auditEventSchema = {
  type: 'object',
  required: ['id', 'at', 'actor', 'actor_kind', 'source', 'action', 'target', 'outcome', 'error_code', 'status'],
  properties: {
    id: { type: 'integer' },
    at: { type: 'string' },
    actor: { type: 'string' },
    actor_kind: { type: 'string', enum: AUDIT_ACTOR_KINDS },
    source: { type: 'string' },
    action: { type: 'string' },
    target: stringMap,
    outcome: { type: 'string', enum: AUDIT_OUTCOMES },
    error_code: nullableString,
    status: { type: 'integer' },
  },
} as const;

/** Events as JSON lines (one auditEventView per line, agent text escaped as in every JSON answer), streamed as they are read. */
export function auditJsonLines(events: AsyncIterable<AuditEvent>): Readable {
  const lines = async function* () {
    for await (const event of events) yield `${escapeUnsafeJson(JSON.stringify(auditEventView(event)))}\n`;
  };
  return Readable.from(lines());
}

/** An event as the API answers it, in a listing and as one line of an export. */
export function auditEventView(event: AuditEvent) {
  return {
    id: event.id,
    at: iso(event.at),
    actor: event.actor,
    actor_kind: event.actorKind,
    source: event.source,
    action: event.action,
    target: event.target,
    outcome: event.outcome,
    error_code: event.errorCode,
    status: event.status,
  };
}

/**
 * The audit log (AuditService):
 * - GET /api/v1/audit?actor&action&outcome&since&until&before&limit: one page (limit ≤ 500, default
 *   100), newest first; `x-next-cursor` names the `before` of the next page when there is one.
 * - GET /api/v1/audit/export?actor&action&outcome&since&until&before: every matching event, newest
 *   first, as JSON lines (application/x-ndjson), read from the database a page at a time.
 * Admins only ('write'), though both only read: the log shows every admin's activity, source
 * addresses and the usernames failed logins tried (sometimes a password typed in the wrong field),
 * which a read-only viewer of the fleet has no need to see. Being 'write', each read of the log is
 * itself recorded in it, as reads of a secret (a bundle's zip) are.
 */
export async function adminAuditRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { services, orgId } = ctx;
  app.get<{ Querystring: AuditQuery }>('/api/v1/audit', {
    config: { access: 'write' },
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { ...filterProperties, limit: pageLimitSchema } },
      response: { 200: { type: 'array', items: auditEventSchema } },
    },
    handler: async (request, reply) => {
      const page = await services.audit.list(orgId, auditFilter(request.query), Number(request.query.limit ?? DEFAULT_AUDIT_PAGE));
      if (page.nextBeforeId !== undefined) reply.header('x-next-cursor', String(page.nextBeforeId));
      return page.events.map(auditEventView);
    },
  });
  app.get<{ Querystring: AuditQuery }>('/api/v1/audit/export', {
    config: { access: 'write' },
    schema: { querystring: { type: 'object', additionalProperties: false, properties: filterProperties } },
    handler: async (request, reply) => {
      return reply.type('application/x-ndjson; charset=utf-8').send(auditJsonLines(services.audit.export(orgId, auditFilter(request.query))));
    },
  });
}

export function auditFilter(query: AuditQuery): AuditFilter {
  return {
    ...(query.actor !== undefined && { actor: query.actor }),
    ...(query.action !== undefined && { action: query.action }),
    ...(query.outcome !== undefined && { outcome: query.outcome }),
    ...(query.since !== undefined && { since: instantOf(query.since, 'since') }),
    ...(query.until !== undefined && { until: instantOf(query.until, 'until') }),
    ...(query.before !== undefined && { beforeId: Number(query.before) }),
  };
}

/** ms since the epoch of a time the schema's pattern admitted; ERR_INVALID_ARGUMENT for one the calendar has not (month 13). */
function instantOf(text: string, field: string): number {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) throw new CtOpsError('ERR_INVALID_ARGUMENT', `${field}: not a date: ${JSON.stringify(text)}`, { field: `querystring.${field}` });
  return ms;
}
