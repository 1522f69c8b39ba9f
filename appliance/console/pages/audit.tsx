import type { AuditEvent } from '../../model/audit.ts';
import { Layout, Time, type PageFrame } from '../views.tsx';

/** The audit page's filters, as given in its URL (the API's /api/v1/audit parameters). */
export interface AuditPageQuery {
  actor?: string;
  action?: string;
  outcome?: string;
  before?: string;
}

function auditUrl(query: AuditPageQuery, path = '/console/audit'): string {
  const params = new URLSearchParams(Object.entries(query).filter(([, value]) => value !== undefined && value !== '') as Array<[string, string]>);
  return `${path}?${params.toString()}`;
}

/**
 * The audit log: every admin action and security event (who, what, when, from where, how it ended),
 * filtered by actor, action and outcome, newest first a page at a time, exported as JSON lines.
 * Admins only: it shows sources and the usernames failed logins tried.
 */
export function AuditPage({ frame, query, events, nextBeforeId }: { frame: PageFrame; query: AuditPageQuery; events: AuditEvent[]; nextBeforeId: number | undefined }) {
  const { before: _before, ...filters } = query;
  return (
    <Layout frame={frame} title="Audit log">
      <h1>Audit log</h1>
      <form method="get" action="/console/audit" class="filters" role="search" aria-label="Filter the audit log">
        <div>
          <label for="actor">Actor</label>
          <input id="actor" name="actor" maxLength={64} value={query.actor ?? ''} />
        </div>
        <div>
          <label for="action">Action (e.g. hosts.approve)</label>
          <input id="action" name="action" maxLength={128} value={query.action ?? ''} />
        </div>
        <div>
          <label for="outcome">Outcome</label>
          <select id="outcome" name="outcome">
            <option value="">Any</option>
            {['ok', 'refused', 'failed'].map((outcome) => (
              <option key={outcome} value={outcome} selected={query.outcome === outcome}>
                {outcome}
              </option>
            ))}
          </select>
        </div>
        <button type="submit">Filter</button>
        <a href={auditUrl(filters, '/console/audit.jsonl')}>Export as JSON lines</a>
      </form>
      <table>
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">Who</th>
            <th scope="col">From</th>
            <th scope="col">Action</th>
            <th scope="col">Target</th>
            <th scope="col">Outcome</th>
          </tr>
        </thead>
        <tbody>
          {events.map((event) => (
            <tr key={event.id}>
              <td>
                <Time at={event.at} />
              </td>
              <td>
                {event.actor === '' ? <span class="muted">unknown</span> : event.actor} <span class="muted">({event.actorKind})</span>
              </td>
              <td>
                <code>{event.source}</code>
              </td>
              <td>
                <code>{event.action}</code>
              </td>
              <td>
                {Object.entries(event.target).map(([key, value]) => (
                  <code key={key}>{value} </code>
                ))}
              </td>
              <td>
                {event.outcome} {event.errorCode && <code>{event.errorCode}</code>} <span class="muted">{event.status}</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        {query.before && <a href={auditUrl(filters)}>Newest</a>}
        {nextBeforeId !== undefined && <a href={auditUrl({ ...filters, before: String(nextBeforeId) })}>Older</a>}
      </nav>
    </Layout>
  );
}
