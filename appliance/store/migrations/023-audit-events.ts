import type { Migration } from './index.ts';

/**
 * The audit log (issue 13, "Audit log"): one row per admin action or security event, written at the
 * HTTP edge after the answer (appliance/http/audit-hook.ts).
 *
 * - id only grows (AUTOINCREMENT: never reused after a prune), so a page is keyset-paged on it, newest first.
 * - actor is the username, or the username a login tried, or '' when unknown; actor_kind how the
 *   request came: 'cli' (the local CLI credential), 'api-session', 'console', 'anonymous'.
 * - source is the caller's IPv4 address or IPv6 /64; action a stable name derived from the route
 *   ('hosts.approve'); target the route's parameters as a JSON object; never a body.
 * - outcome 'ok' | 'refused' | 'failed', with the catalogue code answered (null when none) and the HTTP status.
 * - at is Unix milliseconds; rows older than the retention (audit_retention_days) are pruned.
 * One index per filter, each ending in id for the newest-first order; `at` alone for the prune.
 */
export const migration023AuditEvents: Migration = {
  version: 23,
  description: 'audit_events: admin actions and security events, filterable and pruned by age',
  sql: `
CREATE TABLE audit_events (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  org_id      TEXT NOT NULL REFERENCES organisations(id),
  at          INTEGER NOT NULL,
  actor       TEXT NOT NULL,
  actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('cli', 'api-session', 'console', 'anonymous')),
  source      TEXT NOT NULL,
  action      TEXT NOT NULL,
  target      TEXT NOT NULL,
  outcome     TEXT NOT NULL CHECK (outcome IN ('ok', 'refused', 'failed')),
  error_code  TEXT,
  status      INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599)
);
CREATE INDEX audit_events_actor ON audit_events(org_id, actor, id);
CREATE INDEX audit_events_action ON audit_events(org_id, action, id);
CREATE INDEX audit_events_outcome ON audit_events(org_id, outcome, id);
CREATE INDEX audit_events_at ON audit_events(at);
`,
};
