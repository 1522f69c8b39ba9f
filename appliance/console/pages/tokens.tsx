import type { CtOpsError } from '../../../common/errors.ts';
import { ARCHITECTURES, OPERATING_SYSTEMS, type BuiltBundle } from '../../../bundler/index.ts';
import type { EnrolmentToken } from '../../model/enrolment.ts';
import { AgentText, CsrfField, ErrorBox, Layout, PostButton, ShownOnce, TagList, Time, type PageFrame } from '../views.tsx';

/** A token as the tokens page lists it: its state now and the host that enrolled with it last. */
export interface TokenRow {
  token: EnrolmentToken;
  state: string;
  lastUse: { hostId: string; hostname: string; enrolledAt: number } | undefined;
}

/** Enrolment tokens: create (label, expiry, max uses, auto-approve, tags), revoke; uses and the last host enrolled. */
export function TokensPage({ frame, rows, created, error }: { frame: PageFrame; rows: TokenRow[]; created?: { id: string; secret: string }; error?: CtOpsError }) {
  const mayAct = frame.admin?.role === 'admin';
  return (
    <Layout frame={frame} title="Enrolment tokens">
      <h1>Enrolment tokens</h1>
      {created && <ShownOnce id="new-token" label={`The secret of token ${created.id}.`} secret={created.secret} />}
      {error && <ErrorBox error={error} />}
      {mayAct && (
        <form method="post" action="/console/tokens" class="filters" aria-label="Create a token">
          <CsrfField token={frame.csrfToken} />
          <div>
            <label for="label">Label</label>
            <input id="label" name="label" maxLength={128} />
          </div>
          <div>
            <label for="expires_in_days">Valid for (days)</label>
            <input id="expires_in_days" name="expires_in_days" type="number" min={1} max={366} value="7" required />
          </div>
          <div>
            <label for="max_uses">Hosts that may enrol with it</label>
            <input id="max_uses" name="max_uses" type="number" min={1} max={100000} value="1" required />
          </div>
          <div>
            <label for="tags">Tags (key=value, comma-separated)</label>
            <input id="tags" name="tags" maxLength={2000} />
          </div>
          <div>
            <input type="checkbox" id="auto_approve" name="auto_approve" value="true" /> <label for="auto_approve" class="inline-label">Approve its hosts automatically</label>
          </div>
          <button type="submit">Create token</button>
        </form>
      )}
      <table>
        <thead>
          <tr>
            <th scope="col">Token</th>
            <th scope="col">State</th>
            <th scope="col">Uses</th>
            <th scope="col">Last used by</th>
            <th scope="col">Expires</th>
            <th scope="col">Auto-approve</th>
            <th scope="col">Tags</th>
            <th scope="col">Created</th>
            {mayAct && <th scope="col">Revoke</th>}
          </tr>
        </thead>
        <tbody>
          {rows.map(({ token, state, lastUse }) => (
            <tr key={token.id}>
              <td>
                <code>{token.id}</code> {token.label && <>“{token.label}”</>}
                {token.metadata.bundle_id && (
                  <>
                    <br />
                    bundle <code>{token.metadata.bundle_id}</code>
                  </>
                )}
              </td>
              <td>{state}</td>
              <td>{`${token.uses} of ${token.maxUses}`}</td>
              <td>
                {lastUse ? (
                  <>
                    <a href={`/console/hosts/${lastUse.hostId}`}>
                      <AgentText text={lastUse.hostname} />
                    </a>{' '}
                    <Time at={lastUse.enrolledAt} />
                  </>
                ) : (
                  '—'
                )}
              </td>
              <td>
                <Time at={token.expiresAt} />
              </td>
              <td>{token.autoApprove ? 'yes' : 'no'}</td>
              <td>
                <TagList tags={token.tags} />
              </td>
              <td>
                <Time at={token.createdAt} /> by {token.createdBy}
              </td>
              {mayAct && (
                <td>
                  {state === 'active' && (
                    <PostButton action={`/console/tokens/${token.id}/revoke`} label="Revoke" ariaLabel={`Revoke ${token.id}`} csrfToken={frame.csrfToken} danger />
                  )}
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}

/** A bundle built from a token: the chain of custody from bundle to host. */
export interface BundleRow {
  token: EnrolmentToken;
  lastUse: TokenRow['lastUse'];
}

/**
 * Install bundles: build one (OS/arch, token mode, tags, address) and download it; the bundles built
 * with a token of their own (id, creator, time, token, hosts enrolled), and after a build the
 * fingerprints to compare at the transfer station.
 */
export function BundlesPage({ frame, rows, built, error, defaults }: { frame: PageFrame; rows: BundleRow[]; built?: BuiltBundle; error?: CtOpsError; defaults: { address: string } }) {
  const mayAct = frame.admin?.role === 'admin';
  return (
    <Layout frame={frame} title="Install bundles">
      <h1>Install bundles</h1>
      {error && <ErrorBox error={error} />}
      {built && (
        <div class="notice" role="status">
          <p>
            Bundle <code>{built.bundleId}</code> is built: <a href={`/console/bundles/${built.bundleId}/download`}>download {built.file}</a> ({built.size} bytes). It holds an
            enrolment token: treat the media as sensitive.
          </p>
          <dl class="facts" aria-label="Fingerprints to compare at the transfer station">
            <dt>SHA-256 of the zip</dt>
            <dd>
              <code>{built.sha256}</code>
            </dd>
            <dt>CA fingerprint</dt>
            <dd>
              <code>{built.caFingerprint}</code>
            </dd>
            <dt>Bundle key id</dt>
            <dd>
              <code>{built.bundleKeyId}</code>
            </dd>
            <dt>Release key id</dt>
            <dd>
              <code>{built.releaseKeyId}</code>
            </dd>
            <dt>Agent version</dt>
            <dd>{built.agentVersion}</dd>
            <dt>Token</dt>
            <dd>
              {built.token.mode}
              {built.token.id && (
                <>
                  {' '}
                  <code>{built.token.id}</code>
                </>
              )}
            </dd>
          </dl>
        </div>
      )}
      {mayAct && (
        <form method="post" action="/console/bundles" class="filters" aria-label="Build a bundle">
          <CsrfField token={frame.csrfToken} />
          <div>
            <label for="os">OS</label>
            <select id="os" name="os">
              {OPERATING_SYSTEMS.map((os) => (
                <option key={os} value={os}>
                  {os}
                </option>
              ))}
            </select>
          </div>
          <div>
            <label for="arch">Architecture</label>
            <select id="arch" name="arch">
              {ARCHITECTURES.map((arch) => (
                <option key={arch} value={arch}>
                  {arch}
                </option>
              ))}
            </select>
          </div>
          <div>
            <label for="address">Ingest address (host:port; several, comma-separated)</label>
            <input id="address" name="address" required maxLength={2000} value={defaults.address} />
          </div>
          <div>
            <label for="token">Token</label>
            <select id="token" name="token">
              <option value="new">a new single-use token</option>
              <option value="none">none (the operator supplies one)</option>
            </select>
          </div>
          <div>
            <label for="bundle-tags">Tags (key=value, comma-separated)</label>
            <input id="bundle-tags" name="tags" maxLength={2000} />
          </div>
          <div>
            <label for="bundle-label">Label</label>
            <input id="bundle-label" name="label" maxLength={128} />
          </div>
          <button type="submit">Build bundle</button>
        </form>
      )}
      <h2>Bundles built with their own token</h2>
      <table>
        <thead>
          <tr>
            <th scope="col">Bundle</th>
            <th scope="col">Target</th>
            <th scope="col">Built</th>
            <th scope="col">Token</th>
            <th scope="col">Hosts enrolled</th>
            <th scope="col">Last host</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ token, lastUse }) => (
            <tr key={token.id}>
              <td>
                <code>{token.metadata.bundle_id}</code>
              </td>
              <td>{`${token.metadata.os ?? '?'} ${token.metadata.arch ?? '?'}`}</td>
              <td>
                <Time at={token.createdAt} /> by {token.metadata.created_by ?? token.createdBy}
              </td>
              <td>
                <code>{token.id}</code>
              </td>
              <td>{`${token.uses} of ${token.maxUses}`}</td>
              <td>
                {lastUse ? (
                  <a href={`/console/hosts/${lastUse.hostId}`}>
                    <AgentText text={lastUse.hostname} />
                  </a>
                ) : (
                  '—'
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}
