import { createHash } from 'node:crypto';
import type { ComponentChildren } from 'preact';
import type { CtOpsError } from '../../../common/errors.ts';
import type { HostStatus } from '../../hosts/status.ts';
import type { Host } from '../../model/host.ts';
import type { EnrolmentToken } from '../../model/enrolment.ts';
import type { HostSortKey } from '../../store/host-page.ts';
import { OPERATING_SYSTEMS } from '../../../bundler/index.ts';
import { AgentText, PostButton, SHOWN_STATUSES, TagList, ErrorBox, Layout, StatusBadge, Time, type PageFrame } from '../views.tsx';

/** One host row as the console shows it: the stored host and its status (computed with the page, in SQL). */
export interface HostRow {
  host: Host;
  status: HostStatus;
}

/** The hosts page's query, as given in its URL. */
export interface HostsQuery {
  status?: HostStatus;
  os?: string;
  tag?: string;
  version?: string;
  q?: string;
  sort: HostSortKey;
  descending: boolean;
  page: number;
}

export interface HostsData {
  query: HostsQuery;
  rows: HostRow[];
  total: number;
  pageSize: number;
}

const COLUMNS: ReadonlyArray<[HostSortKey | undefined, string]> = [
  ['hostname', 'Hostname'],
  ['status', 'Status'],
  ['os', 'OS'],
  [undefined, 'Tags'],
  ['version', 'Agent'],
  ['last_seen', 'Last heartbeat'],
  ['enrolled', 'Enrolled'],
];

/** The URL of the hosts page for `query` with `change` applied (filters keep, page resets unless given). */
export function hostsUrl(query: HostsQuery, change: Partial<HostsQuery> = {}, fragment?: string): string {
  const next = { ...query, page: 1, ...change };
  const params = new URLSearchParams();
  for (const key of ['status', 'os', 'tag', 'version', 'q'] as const) if (next[key]) params.set(key, String(next[key]));
  params.set('sort', `${next.descending ? '-' : ''}${next.sort}`);
  if (next.page > 1) params.set('page', String(next.page));
  if (fragment) params.set('fragment', fragment);
  return `/console/hosts?${params.toString()}`;
}

/** Hosts: filter by status, OS, tag and agent version, search by name, sort by any column, page through. */
export function HostsPage({ frame, data }: { frame: PageFrame; data: HostsData }) {
  const { query } = data;
  return (
    <Layout frame={frame} title="Hosts">
      <h1>Hosts</h1>
      <form method="get" action="/console/hosts" class="filters" role="search" aria-label="Filter hosts">
        <div>
          <label for="q">Hostname contains</label>
          <input id="q" name="q" type="search" value={query.q ?? ''} maxLength={253} />
        </div>
        <div>
          <label for="status">Status</label>
          <select id="status" name="status">
            <option value="">Any</option>
            {SHOWN_STATUSES.map((status) => (
              <option key={status} value={status} selected={query.status === status}>
                {status}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="os">OS</label>
          <select id="os" name="os">
            <option value="">Any</option>
            {OPERATING_SYSTEMS.map((os) => (
              <option key={os} value={os} selected={query.os === os}>
                {os}
              </option>
            ))}
          </select>
        </div>
        <div>
          <label for="tag">Tag (key or key=value)</label>
          <input id="tag" name="tag" value={query.tag ?? ''} maxLength={200} />
        </div>
        <div>
          <label for="version">Agent version</label>
          <input id="version" name="version" value={query.version ?? ''} maxLength={64} />
        </div>
        <input type="hidden" name="sort" value={`${query.descending ? '-' : ''}${query.sort}`} />
        <button type="submit">Filter</button>
      </form>
      <HostsTable data={data} />
    </Layout>
  );
}

/** The table and its pager: the part that refreshes itself when the fleet changes. */
export function HostsTable({ data }: { data: HostsData }) {
  const { query, rows, total, pageSize } = data;
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const first = total === 0 ? 0 : (query.page - 1) * pageSize + 1;
  return (
    <div id="hosts-table" hx-get={hostsUrl(query, { page: query.page }, 'table')} hx-trigger="fleet-changed from:body" hx-swap="outerHTML" hx-headers='{"x-console-background": "1"}'>
      <p aria-live="polite">{total === 0 ? 'No host matches.' : `Hosts ${first}–${first + rows.length - 1} of ${total}`}</p>
      <table>
        <caption class="skip">Hosts, sorted by {query.sort}</caption>
        <thead>
          <tr>
            {COLUMNS.map(([key, label]) => (
              <th key={label} scope="col" aria-sort={key === query.sort ? (query.descending ? 'descending' : 'ascending') : undefined}>
                {key ? <a href={hostsUrl(query, { sort: key, descending: key === query.sort ? !query.descending : false })}>{label}</a> : label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map(({ host, status }) => (
            <tr key={host.id} data-host-id={host.id}>
              <td>
                <a href={`/console/hosts/${host.id}`}>
                  <AgentText text={host.hostname} />
                </a>
                <br />
                <code class="muted">{host.id}</code>
              </td>
              <td>
                <StatusBadge status={status} />
              </td>
              <td>
                <AgentText text={`${host.os} ${host.osVersion}`.trim()} /> <span class="muted">{host.arch}</span>
              </td>
              <td>
                <TagList tags={host.tags} />
              </td>
              <td>
                <AgentText text={host.agentVersion} />
              </td>
              <td>
                <Time at={host.lastHeartbeatAt} />
              </td>
              <td>
                <Time at={host.enrolledAt} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Pages">
        {query.page > 1 && <a href={hostsUrl(query, { page: query.page - 1 })}>Previous</a>}
        <span>{`Page ${query.page} of ${pages}`}</span>
        {query.page < pages && <a href={hostsUrl(query, { page: query.page + 1 })}>Next</a>}
      </nav>
    </div>
  );
}

/** A pending host with what an admin needs to decide: its facts, its token, and the host it may clone. */
export interface PendingHost {
  host: Host;
  token: EnrolmentToken | undefined;
  /** The live host whose machine fingerprint it reported, if any (a clone, or a reinstall). */
  existing: Host | undefined;
}

/** "SHA256:<base64>" of the host's public key, the form OpenSSH prints (ssh-keygen -l). */
export function keyFingerprint(publicKey: Buffer): string {
  return `SHA256:${createHash('sha256').update(publicKey).digest('base64').replace(/=+$/, '')}`;
}

/** Pending approvals: each host's facts, the clone warning side by side, approve / reject / approve as replacement. */
export function PendingPage({ frame, pending, error }: { frame: PageFrame; pending: PendingHost[]; error?: CtOpsError }) {
  return (
    <Layout frame={frame} title="Pending approvals">
      <h1>Pending approvals</h1>
      {error && <ErrorBox error={error} />}
      <PendingList frame={frame} pending={pending} />
    </Layout>
  );
}

export function PendingList({ frame, pending }: { frame: PageFrame; pending: PendingHost[] }) {
  const mayDecide = frame.admin?.role === 'admin';
  return (
    <div id="pending" hx-get="/console/pending?fragment=list" hx-trigger="fleet-changed from:body" hx-swap="outerHTML" hx-headers='{"x-console-background": "1"}'>
      <p aria-live="polite">{pending.length === 0 ? 'No host is waiting for approval.' : `${pending.length} host(s) waiting for approval.`}</p>
      {pending.map(({ host, token, existing }) => (
        <section key={host.id} id={host.id} class="card" aria-labelledby={`${host.id}-name`}>
          <h2 id={`${host.id}-name`}>
            <AgentText text={host.hostname} />
          </h2>
          {existing && (
            <p class="warning" role="note">
              This machine reported the fingerprint of host <code>{existing.id}</code> (<AgentText text={existing.hostname} />): a clone of it, or the same machine reinstalled. Compare them before approving.
            </p>
          )}
          <div class={existing ? 'side-by-side' : undefined}>
            <HostFacts host={host} token={token} />
            {existing && <HostFacts host={existing} token={undefined} title="Existing host" />}
          </div>
          {mayDecide && (
            <p>
              {/* Ids: when a live refresh replaces the list, htmx gives focus back to the element with the same id. */}
              <PostButton action={`/console/hosts/${host.id}/approve`} id={`approve-${host.id}`} label="Approve" csrfToken={frame.csrfToken} />{' '}
              <PostButton action={`/console/hosts/${host.id}/reject`} id={`reject-${host.id}`} label="Reject" csrfToken={frame.csrfToken} danger />{' '}
              {existing && (
                <PostButton
                  action={`/console/hosts/${host.id}/approve-as-replacement`}
                  id={`replace-${host.id}`}
                  label={`Approve as replacement of ${existing.id}`}
                  fields={{ replaces: existing.id }}
                  csrfToken={frame.csrfToken}
                />
              )}
            </p>
          )}
        </section>
      ))}
    </div>
  );
}

/** A host's identifying facts as a definition list; `children` adds rows (dt/dd pairs) at the end. */
export function HostFacts({ host, token, title, children }: { host: Host; token: EnrolmentToken | undefined; title?: string; children?: ComponentChildren }) {
  return (
    <dl class="facts" aria-label={title ?? 'Host facts'}>
      {title && (
        <>
          <dt>Shown</dt>
          <dd>{title}</dd>
        </>
      )}
      <dt>Host id</dt>
      <dd>
        <code>{host.id}</code>
      </dd>
      <dt>OS</dt>
      <dd>
        <AgentText text={`${host.os} ${host.osVersion} (${host.arch})`} />
      </dd>
      <dt>IP addresses</dt>
      <dd>
        <AgentText text={host.ipAddresses.join(', ') || '—'} />
      </dd>
      <dt>Key fingerprint</dt>
      <dd>
        <code>{keyFingerprint(host.publicKey)}</code>
      </dd>
      <dt>Machine fingerprint</dt>
      <dd>
        <code>
          <AgentText text={host.machineFingerprint} />
        </code>
      </dd>
      <dt>Clock offset</dt>
      <dd>{host.clockOffsetMs === null ? 'not yet known' : `${(host.clockOffsetMs / 1000).toFixed(1)} s`}</dd>
      <dt>Enrolled</dt>
      <dd>
        <Time at={host.enrolledAt} />
      </dd>
      <dt>Token</dt>
      <dd>{token ? <TokenSummary token={token} /> : host.enrolmentTokenId ? <code>{host.enrolmentTokenId}</code> : '—'}</dd>
      <dt>Install bundle</dt>
      <dd>
        <BundleOrigin host={host} token={token} />
      </dd>
      {children}
    </dl>
  );
}

function TokenSummary({ token }: { token: EnrolmentToken }) {
  return (
    <>
      <code>{token.id}</code> {token.label && <>“{token.label}”</>} created by {token.createdBy}
    </>
  );
}

/**
 * The bundle the host came from: the agent's own claim when it made one (unsigned, but per host: an
 * existing token serves bundles and hand installs alike), else the bundle its token was made for.
 */
function BundleOrigin({ host, token }: { host: Host; token: EnrolmentToken | undefined }) {
  if (host.installBundleId !== null) {
    return (
      <>
        <code>{host.installBundleId}</code> (the agent's claim)
      </>
    );
  }
  const bundle = token?.metadata.bundle_id;
  return bundle ? (
    <>
      <code>{bundle}</code> (its token was made for it)
    </>
  ) : (
    <>—</>
  );
}
