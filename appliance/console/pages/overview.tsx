import type { HostStatus } from '../../hosts/status.ts';
import type { HostUpdate } from '../../model/rollout.ts';
import type { Task } from '../../model/task.ts';
import { AgentText, Layout, SHOWN_STATUSES, statusLabel, Time, type PageFrame } from '../views.tsx';

export interface OverviewData {
  /** Hosts per status (deleted hosts are not counted). */
  counts: Record<HostStatus, number>;
  /** Pending hosts that reported the machine fingerprint of a live host: a clone or a reinstall. */
  cloneWarnings: Array<{ id: string; hostname: string; conflictWith: string }>;
  /** Tasks that failed or timed out in the last 24 hours (newest first, at most 100). */
  failedTasks: Task[];
  /** Update attempts that failed or rolled back in the last 7 days (newest first, at most 100). */
  failedUpdates: HostUpdate[];
  /** When the server certificate expires (ms since the epoch) and whether that is within 30 days. */
  certificate: { notAfter: number; soon: boolean };
}


/** Overview: counts by status and what needs an admin now. The counts refresh live. */
export function OverviewPage({ frame, data }: { frame: PageFrame; data: OverviewData }) {
  return (
    <Layout frame={frame} title="Overview">
      <h1>Overview</h1>
      <OverviewBody data={data} />
    </Layout>
  );
}

/** The part of the overview that refreshes itself when the fleet changes (live.ts). */
export function OverviewBody({ data }: { data: OverviewData }) {
  const attention = data.counts.pending + data.counts['identity-conflict'] + data.cloneWarnings.length + data.failedTasks.length + data.failedUpdates.length + (data.certificate.soon ? 1 : 0);
  return (
    <div id="overview" hx-get="/console/?fragment=overview" hx-trigger="fleet-changed from:body" hx-swap="outerHTML" hx-headers='{"x-console-background": "1"}'>
      <h2 id="counts-title">Hosts</h2>
      <ul class="cards" aria-labelledby="counts-title" aria-live="polite">
        {SHOWN_STATUSES.map((status) => (
          <li class="card" key={status}>
            <a href={`/console/hosts?status=${status}`}>
              <span class="n">{data.counts[status]}</span> {statusLabel(status)}
            </a>
          </li>
        ))}
      </ul>
      <h2>Needs attention</h2>
      {attention === 0 ? (
        <p>Nothing needs attention.</p>
      ) : (
        <ul>
          {data.counts.pending > 0 && (
            <li>
              <a href="/console/pending">{`${data.counts.pending} host(s) waiting for approval`}</a>
            </li>
          )}
          {data.counts['identity-conflict'] > 0 && (
            <li>
              <a href="/console/hosts?status=identity-conflict">{`${data.counts['identity-conflict']} host(s) with an identity conflict (two machines use one key)`}</a>
            </li>
          )}
          {data.cloneWarnings.map((warning) => (
            <li key={warning.id}>
              Pending <a href={`/console/pending#${warning.id}`}><AgentText text={warning.hostname} /></a> has the machine fingerprint of host <code>{warning.conflictWith}</code>: a clone or a reinstall
            </li>
          ))}
          {data.failedTasks.map((task) => (
            <li key={task.id}>
              Task <code>{task.id}</code> ({task.type}) {task.state} on <a href={`/console/hosts/${task.hostId}`}>{task.hostId}</a> <Time at={task.finishedAt} />
              {task.errorCode && <> <code>{task.errorCode}</code></>}
            </li>
          ))}
          {data.failedUpdates.map((update) => (
            <li key={update.hostId}>
              Update to {update.version} {update.phase === 'rolled_back' ? 'rolled back' : 'failed'} on <a href={`/console/hosts/${update.hostId}`}>{update.hostId}</a> <Time at={update.updatedAt} />
              {update.errorCode && <> <code>{update.errorCode}</code></>}
            </li>
          ))}
          {data.certificate.soon && (
            <li>
              The server certificate expires <Time at={data.certificate.notAfter} />: <code>ct-ops-appliance certs rotate-server</code>
            </li>
          )}
        </ul>
      )}
    </div>
  );
}
