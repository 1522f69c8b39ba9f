import { MAX_API_TOKEN_DAYS } from '../../admin/accounts.ts';
import type { AdminApiToken } from '../../model/admin.ts';
import { CsrfField, Layout, PostButton, ShownOnce, Time, type PageFrame } from '../views.tsx';

/**
 * The logged-in admin's API tokens for automation: create (description, read or write, days valid),
 * the secret shown once; the list with scope, expiry and last use; revoke. A token acts as its owner,
 * never beyond their role; a read token only reads.
 */
export function ApiTokensPage({ frame, tokens, created }: { frame: PageFrame; tokens: AdminApiToken[]; created?: { id: string; secret: string } }) {
  return (
    <Layout frame={frame} title="API tokens">
      <h1>Your API tokens</h1>
      <p>
        For scripts: send <code>Authorization: Bearer &lt;token&gt;</code> to <code>/api/v1/…</code>. A token acts as you, never beyond your role; a read token only reads.
      </p>
      {created && <ShownOnce id="new-api-token" label={`API token ${created.id}.`} secret={created.secret} />}
      <form method="post" action="/console/api-tokens" class="filters" aria-label="Create an API token">
        <CsrfField token={frame.csrfToken} />
        <div>
          <label for="description">Description</label>
          <input id="description" name="description" maxLength={128} required />
        </div>
        <div>
          <label for="scope">May</label>
          <select id="scope" name="scope">
            <option value="read">read only</option>
            <option value="write">read and change</option>
          </select>
        </div>
        <div>
          <label for="days">Valid for (days)</label>
          <input id="days" name="days" type="number" min={1} max={MAX_API_TOKEN_DAYS} value="90" required />
        </div>
        <button type="submit">Create API token</button>
      </form>
      <table>
        <thead>
          <tr>
            <th scope="col">Token</th>
            <th scope="col">May</th>
            <th scope="col">Created</th>
            <th scope="col">Expires</th>
            <th scope="col">Last used</th>
            <th scope="col">Revoke</th>
          </tr>
        </thead>
        <tbody>
          {tokens.map((token) => (
            <tr key={token.id}>
              <td>
                <code>{token.id}</code> {token.description}
              </td>
              <td>{token.scope === 'read' ? 'read only' : 'read and change'}</td>
              <td>
                <Time at={token.createdAt} />
              </td>
              <td>
                <Time at={token.expiresAt} />
              </td>
              <td>
                <Time at={token.lastUsedAt} />
              </td>
              <td>
                <PostButton action={`/console/api-tokens/${token.id}/revoke`} label="Revoke" ariaLabel={`Revoke ${token.id}`} csrfToken={frame.csrfToken} danger />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Layout>
  );
}
