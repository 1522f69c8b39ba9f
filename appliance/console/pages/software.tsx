import type { HostPackageRecord } from '../../model/inventory.ts';
import { AgentText, Layout, Time, type PageFrame } from '../views.tsx';

/** The software page's query, as given in its URL (the API's /api/v1/software parameters). */
export interface SoftwareQuery {
  name?: string;
  min_version?: string;
  max_version?: string;
  include_removed?: '1';
}

/** The URL of the software search (or, with `format` 'csv', of its CSV export) for `query`. */
export function softwareUrl(query: SoftwareQuery, csv = false): string {
  const params = new URLSearchParams(Object.entries(query).filter(([, value]) => value !== undefined && value !== '') as Array<[string, string]>);
  return `/console/software${csv ? '.csv' : ''}?${params.toString()}`;
}

/** Software: which hosts have a package (exact name, optional version range), exportable as CSV. */
export function SoftwarePage({ frame, query, rows }: { frame: PageFrame; query: SoftwareQuery; rows: HostPackageRecord[] | undefined }) {
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
      {rows && (
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
              {rows.map((row) => (
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
        </>
      )}
    </Layout>
  );
}
