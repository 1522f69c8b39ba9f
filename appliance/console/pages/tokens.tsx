import type { CtOpsError } from '../../../common/errors.ts';
import { ARCHITECTURES, OPERATING_SYSTEMS, type BuiltBundle } from '../../../bundler/index.ts';
import type { InstallBundleRecord } from '../../model/bundle.ts';
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

/** How many bundles the bundles page lists, newest first (GET /api/v1/bundles pages through all). */
export const BUNDLES_SHOWN = 100;

/**
 * Install bundles: build one (OS/arch, token mode, tags, address) and download it, and after a build
 * its fingerprints; the bundles on record, the chain of custody from bundle to host (id, who built it
 * and when, its token, the hosts enrolled from it) with the fingerprints to compare at the transfer station.
 */
export function BundlesPage({ frame, page, built, error, defaults }: { frame: PageFrame; page: { bundles: InstallBundleRecord[]; total: number }; built?: BuiltBundle; error?: CtOpsError; defaults: { address: string } }) {
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
              <option value="existing">an existing token (its id and secret below)</option>
              <option value="none">none (the operator supplies one)</option>
            </select>
          </div>
          <div>
            <label for="token-id">Existing token id</label>
            <input id="token-id" name="token_id" maxLength={64} placeholder="etk_…" autocomplete="off" />
          </div>
          <div>
            <label for="token-secret">Its secret (never shown again)</label>
            <input id="token-secret" name="token_secret" type="password" maxLength={256} autocomplete="off" />
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
      <h2>Bundles built</h2>
      <p>
        {page.total > page.bundles.length
          ? `The newest ${page.bundles.length} of ${page.total} bundles (GET /api/v1/bundles lists them all). `
          : `${page.total} bundle(s). `}
        Hosts enrolled are the hosts whose agent says it was installed from the bundle. Compare the SHA-256, bundle key id and CA fingerprint with what the transfer station shows.
      </p>
      <table>
        <thead>
          <tr>
            <th scope="col">Bundle</th>
            <th scope="col">Target</th>
            <th scope="col">Agent</th>
            <th scope="col">Built</th>
            <th scope="col">Token</th>
            <th scope="col">Hosts enrolled</th>
            <th scope="col">Zip and fingerprints</th>
            <th scope="col">Withdrawn</th>
          </tr>
        </thead>
        <tbody>
          {page.bundles.map(({ bundle, hosts }) => (
            <tr key={bundle.id}>
              <td>
                <code>{bundle.id}</code>
                {bundle.label && (
                  <>
                    <br />“{bundle.label}”
                  </>
                )}
              </td>
              <td>{`${bundle.os} ${bundle.arch}`}</td>
              <td>{bundle.agentVersion}</td>
              <td>
                <Time at={bundle.createdAt} /> by {bundle.createdBy}
              </td>
              <td>
                {bundle.tokenMode}
                {bundle.tokenId && (
                  <>
                    {' '}
                    <code>{bundle.tokenId}</code>
                  </>
                )}
              </td>
              <td>
                {hosts.enrolled}
                {hosts.last && (
                  <>
                    , last{' '}
                    <a href={`/console/hosts/${hosts.last.hostId}`}>
                      <AgentText text={hosts.last.hostname} />
                    </a>{' '}
                    <Time at={hosts.last.enrolledAt} />
                  </>
                )}
              </td>
              <td>
                {bundle.zipFile} ({bundle.zipSize} bytes)
                <br />
                SHA-256 <code>{bundle.zipSha256}</code>
                <br />
                bundle key <code>{bundle.bundleKeyId}</code>
                <br />
                CA <code>{bundle.caFingerprint}</code>
              </td>
              <td>
                {bundle.withdrawnAt === null ? (
                  'no'
                ) : (
                  <>
                    <Time at={bundle.withdrawnAt} /> by {bundle.withdrawnBy}
                  </>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}
