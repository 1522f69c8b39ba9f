import type { ComponentChildren } from 'preact';
import { replaceUnsafeText } from '../../common/agent-text.ts';
import type { CtOpsError } from '../../common/errors.ts';
import type { HostStatus } from '../hosts/status.ts';
import type { AdminApiToken } from '../model/admin.ts';
import { assetUrl, type AssetManifest } from './assets.ts';

/*
 * The console's shared parts. Every value is rendered by preact-render-to-string, which escapes text
 * and attribute values; no component sets raw HTML (test/console-*.test.ts greps for it). Text that
 * came from an agent goes through AgentText.
 */

/** What every page's frame needs: the assets, the admin, the CSRF token for htmx requests. */
export interface PageFrame {
  manifest: AssetManifest;
  admin?: AdminApiToken;
  csrfToken: string;
  /** The navigation entry of this page, marked aria-current. */
  section?: 'overview' | 'pending' | 'hosts' | 'software' | 'tokens' | 'bundles' | 'releases' | 'audit' | 'api-tokens' | 'api';
  /** The page follows the fleet's live events (/console/events). */
  live?: boolean;
}

const NAVIGATION = [
  ['overview', '/console/', 'Overview'],
  ['pending', '/console/pending', 'Pending approvals'],
  ['hosts', '/console/hosts', 'Hosts'],
  ['software', '/console/software', 'Software'],
  ['tokens', '/console/tokens', 'Enrolment tokens'],
  ['bundles', '/console/bundles', 'Install bundles'],
  ['releases', '/console/releases', 'Agent releases'],
  ['audit', '/console/audit', 'Audit log'],
  ['api', '/console/api', 'API'],
] as const;

/** The HTML document around a page: one stylesheet and one module script, both from this origin. */
export function Layout({ frame, title, children }: { frame: PageFrame; title: string; children: ComponentChildren }) {
  return (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${title} · CT-Ops console`}</title>
        <link rel="stylesheet" href={assetUrl(frame.manifest, 'console.css')} />
        <script type="module" src={assetUrl(frame.manifest, 'main.js')} />
      </head>
      <body hx-headers={JSON.stringify({ 'x-csrf-token': frame.csrfToken })} data-live={frame.live ? '' : undefined}>
        <a class="skip" href="#main">
          Skip to content
        </a>
        <header class="top">
          <span class="brand">CT-Ops</span>
          {frame.admin && !frame.admin.mustChangePassword && (
            <nav aria-label="Main">
              <ul>
                {NAVIGATION.map(([key, href, label]) => (
                  <li key={key}>
                    <a href={href} aria-current={frame.section === key ? 'page' : undefined}>
                      {label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          )}
          {frame.admin && (
            <div class="who">
              <a href="/console/api-tokens" aria-current={frame.section === 'api-tokens' ? 'page' : undefined}>
                {frame.admin.username} ({frame.admin.role})
              </a>
              <form method="post" action="/console/logout" class="inline">
                <CsrfField token={frame.csrfToken} />
                <button type="submit">Log out</button>
              </form>
            </div>
          )}
        </header>
        <main id="main" tabindex={-1}>
          {children}
        </main>
      </body>
    </html>
  );
}

/**
 * One action as a button in its own POST form (works without script, by keyboard): the CSRF token,
 * `fields` as hidden inputs. An `id` lets htmx give focus back after a live refresh replaces it.
 */
export function PostButton({ action, label, csrfToken, fields = {}, danger = false, id, ariaLabel }: { action: string; label: string; csrfToken: string; fields?: Readonly<Record<string, string>>; danger?: boolean; id?: string; ariaLabel?: string }) {
  return (
    <form method="post" action={action} class="inline">
      <CsrfField token={csrfToken} />
      {Object.entries(fields).map(([name, value]) => (
        <input key={name} type="hidden" name={name} value={value} />
      ))}
      <button type="submit" id={id} class={danger ? 'danger' : undefined} aria-label={ariaLabel}>
        {label}
      </button>
    </form>
  );
}

/** The CSRF token of a form that works without script (htmx requests send it as a header instead). */
export function CsrfField({ token }: { token: string }) {
  return <input type="hidden" name="_csrf" value={token} />;
}

/**
 * Text an agent reported (hostname, OS, package, message): control and bidirectional-override
 * characters shown as U+FFFD (common/agent-text.ts), isolated so it cannot reorder the text around it.
 */
export function AgentText({ text }: { text: string | null | undefined }) {
  return <bdi>{text === null || text === undefined ? '' : replaceUnsafeText(text)}</bdi>;
}

const STATUS_LABELS: Record<HostStatus, string> = {
  online: 'Online',
  offline: 'Offline',
  'never-connected': 'Never connected',
  pending: 'Pending',
  rejected: 'Rejected',
  revoked: 'Revoked',
  deleted: 'Deleted',
  'identity-conflict': 'Identity conflict',
};

/** The statuses the console counts and filters by, in the order it shows them (deleted hosts are never listed). */
export const SHOWN_STATUSES: readonly HostStatus[] = ['online', 'offline', 'never-connected', 'pending', 'identity-conflict', 'rejected', 'revoked'];

export function StatusBadge({ status }: { status: HostStatus }) {
  return <span class={`status status-${status}`}>{STATUS_LABELS[status]}</span>;
}

export function statusLabel(status: HostStatus): string {
  return STATUS_LABELS[status];
}

/** A secret shown once, in a form that can be selected and copied (the button needs script and a secure context). */
export function ShownOnce({ id, label, secret }: { id: string; label: string; secret: string }) {
  return (
    <div class="notice" role="status">
      <p>
        <strong>{label}</strong> It is shown only now: copy it and keep it where it belongs.
      </p>
      <p>
        <code id={id} class="secret">
          {secret}
        </code>{' '}
        <button type="button" class="secondary" data-copy={id}>
          Copy
        </button>
      </p>
    </div>
  );
}

/** A host's tags as `key` or `key=value` codes. */
export function TagList({ tags }: { tags: Readonly<Record<string, string>> }) {
  return (
    <>
      {Object.entries(tags).map(([key, value]) => (
        <code key={key}>{value === '' ? key : `${key}=${value}`} </code>
      ))}
    </>
  );
}

/** A time as a machine-readable <time> showing UTC to the minute; '—' for never. */
export function Time({ at }: { at: number | null }) {
  if (at === null) return <span class="muted">never</span>;
  const iso = new Date(at).toISOString();
  return <time datetime={iso}>{`${iso.slice(0, 16).replace('T', ' ')} UTC`}</time>;
}

/** A refusal or failure, shown in place (role="alert": screen readers announce it). */
export function ErrorBox({ error }: { error: CtOpsError }) {
  return (
    <div class="error" role="alert">
      <strong>{error.message}</strong> <code>{error.code}</code>
    </div>
  );
}
