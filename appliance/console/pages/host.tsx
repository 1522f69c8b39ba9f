import type { HostStatus } from '../../hosts/status.ts';
import type { SoftwarePackageRecord, SoftwareScan } from '../../model/inventory.ts';
import type { Host, HostEvent } from '../../model/host.ts';
import type { HostUpdate } from '../../model/rollout.ts';
import type { Task } from '../../model/task.ts';
import type { VitalsSample } from '../../model/host.ts';
import { HostFacts } from './hosts.tsx';
import { AgentText, CsrfField, PostButton, TagList, Layout, StatusBadge, Time, type PageFrame } from '../views.tsx';

/** Packages shown per page of a host's software. */
export const HOST_PACKAGES_PAGE = 100;

export interface HostPageData {
  host: Host;
  status: HostStatus;
  update: HostUpdate | undefined;
  recentVitals: VitalsSample[];
  packages: SoftwarePackageRecord[];
  /** Show removed packages too (the spec's "Show removed" toggle). */
  showRemoved: boolean;
  packagesPage: number;
  scans: SoftwareScan[];
  tasks: Task[];
  previousNames: HostEvent[];
  /** An uninstall asked for and not yet finished. */
  pendingUninstall: Task | undefined;
}

/**
 * A host: live status and facts, vitals over time (a chart, with the numbers as a table), agent version
 * and update state, software with "Show removed" and a rescan, scans, tasks, previous names, and delete
 * with "Also uninstall agent from the remote host" (the spec's words).
 */
export function HostPage({ frame, data }: { frame: PageFrame; data: HostPageData }) {
  const { host } = data;
  const mayAct = frame.admin?.role === 'admin';
  const base = `/console/hosts/${host.id}`;
  return (
    <Layout frame={frame} title={host.hostname}>
      <h1>
        <AgentText text={host.hostname} />
      </h1>
      <HostSummary data={data} />

      <h2 id="vitals-title">Vitals, last 24 hours</h2>
      <div class="chart" data-vitals={`${base}/vitals`} role="img" aria-labelledby="vitals-title" aria-describedby="vitals-table-summary" />
      <details>
        <summary id="vitals-table-summary">The latest vitals as a table</summary>
        <table>
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">CPU %</th>
              <th scope="col">Memory %</th>
              <th scope="col">Disk %</th>
            </tr>
          </thead>
          <tbody>
            {data.recentVitals.map((sample) => (
              <tr key={sample.receivedAt}>
                <td>
                  <Time at={sample.receivedAt} />
                </td>
                <td>{percent(sample.cpuPercent)}</td>
                <td>{percent(sample.memoryPercent)}</td>
                <td>{percent(sample.diskPercent)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </details>

      <h2 id="software">Software</h2>
      <div class="filters">
        <a href={`${base}?removed=${data.showRemoved ? '0' : '1'}#software`} role="switch" aria-checked={data.showRemoved ? 'true' : 'false'}>
          {data.showRemoved ? 'Hide removed' : 'Show removed'}
        </a>
        {mayAct && <PostButton action={`${base}/rescan`} label="Rescan" csrfToken={frame.csrfToken} />}
      </div>
      <table>
        <caption class="skip">Packages{data.showRemoved ? ', removed ones included' : ''}</caption>
        <thead>
          <tr>
            <th scope="col">Name</th>
            <th scope="col">Version</th>
            <th scope="col">Architecture</th>
            <th scope="col">Source</th>
            <th scope="col">First seen</th>
            <th scope="col">Removed</th>
          </tr>
        </thead>
        <tbody>
          {data.packages.map((item) => (
            <tr key={`${item.name}\u0000${item.architecture}\u0000${item.version}`} class={item.isRemoved ? 'removed' : undefined}>
              <td>
                <AgentText text={item.name} />
              </td>
              <td>
                <AgentText text={item.version} />
              </td>
              <td>
                <AgentText text={item.architecture} />
              </td>
              <td>
                <AgentText text={item.source} />
              </td>
              <td>
                <Time at={item.firstSeen} />
              </td>
              <td>{item.isRemoved ? <Time at={item.removedAt} /> : ''}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <nav class="pager" aria-label="Software pages">
        {data.packagesPage > 1 && <a href={`${base}?removed=${data.showRemoved ? '1' : '0'}&page=${data.packagesPage - 1}#software`}>Previous</a>}
        <span>{`Page ${data.packagesPage}`}</span>
        {data.packages.length === HOST_PACKAGES_PAGE && <a href={`${base}?removed=${data.showRemoved ? '1' : '0'}&page=${data.packagesPage + 1}#software`}>Next</a>}
      </nav>

      <HostActivity data={data} />

      <h2>Previous names</h2>
      {data.previousNames.length === 0 ? (
        <p>None.</p>
      ) : (
        <ul>
          {data.previousNames.map((event) => (
            <li key={event.id}>
              <AgentText text={String(event.details.from ?? '')} /> until <Time at={event.at} />
            </li>
          ))}
        </ul>
      )}

      {mayAct && host.deletedAt === null && (
        <>
          <h2>Delete</h2>
          <form method="post" action={`${base}/delete`}>
            <CsrfField token={frame.csrfToken} />
            <p>
              <input type="checkbox" id="uninstall" name="uninstall" value="true" />{' '}
              <label for="uninstall" class="inline-label">
                Also uninstall agent from the remote host
              </label>
            </p>
            <button type="submit" class="danger">
              Delete host
            </button>
          </form>
        </>
      )}
    </Layout>
  );
}

/** Status, facts and update state: the part that refreshes itself when the fleet changes. */
export function HostSummary({ data }: { data: HostPageData }) {
  const { host, update } = data;
  return (
    <div
      id="host-summary"
      data-live-host={host.id}
      hx-get={`/console/hosts/${host.id}?fragment=summary`}
      hx-trigger="fleet-changed from:body, host-changed from:body"
      hx-swap="outerHTML"
      hx-headers='{"x-console-background": "1"}'
    >
      <p aria-live="polite">
        <StatusBadge status={data.status} /> · last heartbeat <Time at={host.lastHeartbeatAt} />
        {data.pendingUninstall && <> · uninstall requested ({data.pendingUninstall.state})</>}
      </p>
      <HostFacts host={host} token={undefined}>
        <dt>Agent version</dt>
        <dd>
          <AgentText text={host.agentVersion} />
        </dd>
        <dt>Update</dt>
        <dd>
          {update ? (
            <>
              {update.version}: {update.phase} <Time at={update.updatedAt} />
              {update.errorCode && <> <code>{update.errorCode}</code></>} {update.detail && <AgentText text={update.detail} />}
            </>
          ) : (
            'none'
          )}
        </dd>
        <dt>Tags</dt>
        <dd>
          <TagList tags={host.tags} />
        </dd>
        <dt>Decided by</dt>
        <dd>{host.decidedBy ?? '—'}</dd>
      </HostFacts>
    </div>
  );
}

/** Scans and tasks: the part that refreshes itself when the host changed (a task's step, a scan's progress). */
export function HostActivity({ data }: { data: HostPageData }) {
  return (
    <div id="host-activity" hx-get={`/console/hosts/${data.host.id}?fragment=activity`} hx-trigger="host-changed from:body" hx-swap="outerHTML" hx-headers='{"x-console-background": "1"}'>
        <h2>Scans</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Started</th>
              <th scope="col">Status</th>
              <th scope="col">Packages</th>
              <th scope="col">Added</th>
              <th scope="col">Removed</th>
              <th scope="col">Completed</th>
            </tr>
          </thead>
          <tbody>
            {data.scans.map((scan) => (
              <tr key={scan.id}>
                <td>
                  <Time at={scan.startedAt} />
                </td>
                <td>{scan.status}</td>
                <td>{scan.packagesReceived}</td>
                <td>{scan.added}</td>
                <td>{scan.removed}</td>
                <td>
                  <Time at={scan.completedAt} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>

        <h2>Tasks</h2>
        <table>
          <thead>
            <tr>
              <th scope="col">Task</th>
              <th scope="col">Type</th>
              <th scope="col">State</th>
              <th scope="col">Asked by</th>
              <th scope="col">Created</th>
              <th scope="col">Finished</th>
              <th scope="col">Outcome</th>
            </tr>
          </thead>
          <tbody>
            {data.tasks.map((task) => (
              <tr key={task.id}>
                <td>
                  <code>{task.id}</code>
                </td>
                <td>{task.type}</td>
                <td>{task.state}</td>
                <td>{task.createdBy}</td>
                <td>
                  <Time at={task.createdAt} />
                </td>
                <td>
                  <Time at={task.finishedAt} />
                </td>
                <td>
                  {task.errorCode && <code>{task.errorCode}</code>} <AgentText text={task.output?.slice(0, 200)} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
    </div>
  );
}

function percent(value: number | null): string {
  return value === null ? '—' : value.toFixed(1);
}
