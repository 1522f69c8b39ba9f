import type { HostPackageRecord } from '../../model/inventory.ts';
import { AgentText, Layout, Time, type PageFrame } from '../views.tsx';

/** The software page's query, as given in its URL (the API's /api/v1/software parameters). */
export interface SoftwareQuery {
  name?: string;
  min_version?: string;
  max_version?: string;
  include_removed?: '1';
  /** 1-based page of SOFTWARE_PAGE_ROWS hosts (default 1). */
  page?: string;
}

/**
 * Hosts shown per page of a search. A package every host has would otherwise render one row per host:
 * 20,000 rows took about a second of the appliance's CPU and 5 MB of HTML (bench:inventory-fleet); the
 * CSV export still has them all.
 */
export const SOFTWARE_PAGE_ROWS = 500;

/** The URL of the software search's page `page` (or, with `csv`, of its whole CSV export) for `query`. */
export function softwareUrl(query: SoftwareQuery, csv = false, page?: number): string {
  const fields = { ...query, page: csv || page === undefined || page === 1 ? undefined : String(page) };
  const params = new URLSearchParams(Object.entries(fields).filter(([, value]) => value !== undefined && value !== '') as Array<[string, string]>);
  return `/console/software${csv ? '.csv' : ''}?${params.toString()}`;
}

/** Software: which hosts have a package (exact name, optional version range), exportable as CSV. */
export function SoftwarePage({ frame, query, rows }: { frame: PageFrame; query: SoftwareQuery; rows: HostPackageRecord[] | undefined }) {
  const pages = Math.max(1, Math.ceil((rows?.length ?? 0) / SOFTWARE_PAGE_ROWS));
  const page = Math.min(pages, Number(query.page ?? 1));
  const shown = rows?.slice((page - 1) * SOFTWARE_PAGE_ROWS, page * SOFTWARE_PAGE_ROWS);
  return (
    <Layout frame={frame} title="Software">
      <h1>Software</h1>
      <form method="get" action="/console/software" class="filters" role="search" aria-label="Find a package">
        <div>
          <label for="name">Package name (exact)</label>
          <input id="name" name="name" required maxLength={256} value={query.name ?? ''} />
        </div>
        <div>
          <label for="min_version">From version</label>
          <input id="min_version" name="min_version" maxLength={256} value={query.min_version ?? ''} />
        </div>
        <div>
          <label for="max_version">To version</label>
          <input id="max_version" name="max_version" maxLength={256} value={query.max_version ?? ''} />
        </div>
        <div>
          <input type="checkbox" id="include_removed" name="include_removed" value="1" checked={query.include_removed === '1'} />{' '}
          <label for="include_removed" class="inline-label">
            Hosts that had it too
          </label>
        </div>
        <button type="submit">Find hosts</button>
      </form>
      {rows && shown && (
        <>
          <p aria-live="polite">
            {`${rows.length} host(s) have ${query.name}.`} {rows.length > 0 && <a href={softwareUrl(query, true)}>Export as CSV</a>}
          </p>
          <table>
            <thead>
              <tr>
                <th scope="col">Host</th>
                <th scope="col">Version</th>
                <th scope="col">Architecture</th>
                <th scope="col">Source</th>
                <th scope="col">First seen</th>
                <th scope="col">Removed</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((row) => (
                <tr key={`${row.hostId}\u0000${row.architecture}\u0000${row.version}`}>
                  <td>
                    <a href={`/console/hosts/${row.hostId}`}>
                      <AgentText text={row.hostname} />
                    </a>
                  </td>
                  <td>
                    <AgentText text={row.version} />
                  </td>
                  <td>
                    <AgentText text={row.architecture} />
                  </td>
                  <td>
                    <AgentText text={row.source} />
                  </td>
                  <td>
                    <Time at={row.firstSeen} />
                  </td>
                  <td>{row.isRemoved ? <Time at={row.removedAt} /> : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {pages > 1 && (
            <nav class="pager" aria-label="Pages">
              {page > 1 && <a href={softwareUrl(query, false, page - 1)}>Previous</a>}
              <span>{`Page ${page} of ${pages}`}</span>
              {page < pages && <a href={softwareUrl(query, false, page + 1)}>Next</a>}
            </nav>
          )}
        </>
      )}
    </Layout>
  );
}
