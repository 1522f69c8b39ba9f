import type { AgentRelease, ReleaseMinimum } from '../../model/release.ts';
import type { RolloutStatus } from '../../releases/rollouts.ts';
import { Layout, PostButton, Time, type PageFrame } from '../views.tsx';

/**
 * Agent releases: the imported versions, the minimum version, and the current rollout's groups with
 * their progress and windows; pause and resume. Imports and starting a rollout stay on the CLI
 * (`releases import`, `releases rollout`): the media are read on the appliance host.
 */
export function ReleasesPage({ frame, releases, minimum, status }: { frame: PageFrame; releases: AgentRelease[]; minimum: ReleaseMinimum | undefined; status: RolloutStatus | undefined }) {
  const mayAct = frame.admin?.role === 'admin';
  const rollout = status?.rollout;
  return (
    <Layout frame={frame} title="Agent releases">
      <h1>Agent releases</h1>
      <p>
        Minimum version: {minimum ? <><strong>{minimum.version}</strong> (set by {minimum.setBy} <Time at={minimum.setAt} />)</> : 'none'}
      </p>
      <table>
        <thead>
          <tr>
            <th scope="col">Version</th>
            <th scope="col">Imported</th>
            <th scope="col">Key id</th>
            <th scope="col">Files</th>
            <th scope="col">State</th>
          </tr>
        </thead>
        <tbody>
          {releases.map((release) => (
            <tr key={release.version}>
              <td>{release.version}</td>
              <td>
                <Time at={release.importedAt} /> by {release.importedBy}
              </td>
              <td>
                <code>{release.keyId}</code>
              </td>
              <td>{release.files.length}</td>
              <td>{release.retiredAt === null ? 'active' : <>retired <Time at={release.retiredAt} /></>}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <h2>Rollout</h2>
      {!rollout || !status ? (
        <p>No rollout was started (on the appliance: <code>ct-ops-appliance releases rollout VERSION</code>).</p>
      ) : (
        <>
          <p>
            Version <strong>{rollout.version}</strong>: <strong>{rollout.state}</strong>
            {rollout.haltedReason && <> ({rollout.haltedReason})</>}, started <Time at={rollout.createdAt} /> by {rollout.createdBy}.
          </p>
          {mayAct && (rollout.state === 'running' || rollout.state === 'paused') && (
            <PostButton
              action={`/console/rollouts/current/${rollout.state === 'running' ? 'pause' : 'resume'}`}
              label={rollout.state === 'running' ? 'Pause rollout' : 'Resume rollout'}
              csrfToken={frame.csrfToken}
            />
          )}
          <table>
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Started</th>
                <th scope="col">Healthy / eligible</th>
                <th scope="col">Threshold</th>
                <th scope="col">Rolled back</th>
                <th scope="col">Failed</th>
                <th scope="col">Window</th>
              </tr>
            </thead>
            <tbody>
              {status.groups.map((progress) => (
                <tr key={progress.group.position}>
                  <td>{progress.group.name}</td>
                  <td>
                    <Time at={progress.group.startedAt} />
                  </td>
                  <td>
                    <progress max={Math.max(progress.eligible, 1)} value={progress.healthy} aria-label={`${progress.group.name}: ${progress.healthy} of ${progress.eligible} healthy`} />{' '}
                    {`${progress.healthy} / ${progress.eligible}`}
                  </td>
                  <td>{`${progress.group.successPercent} %${progress.met ? ' (met)' : ''}`}</td>
                  <td>{progress.rolledBack}</td>
                  <td>{progress.failed}</td>
                  <td>{progress.group.maintenanceWindow === null ? 'any time' : `${progress.group.maintenanceWindow} (${progress.windowOpen ? 'open' : 'closed'})`}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Layout>
  );
}
