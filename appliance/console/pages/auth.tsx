import type { CtOpsError } from '../../../common/errors.ts';
import { MIN_PASSWORD_LENGTH } from '../../admin/accounts.ts';
import { CsrfField, ErrorBox, Layout, type PageFrame } from '../views.tsx';

/** The login form; `error` is the refusal of the last attempt (wrong password, locked with its wait). */
export function LoginPage({ frame, error, username }: { frame: PageFrame; error?: CtOpsError; username?: string }) {
  return (
    <Layout frame={frame} title="Log in">
      <form method="post" action="/console/login" class="login">
        <h1>Log in to the console</h1>
        {error && <ErrorBox error={error} />}
        <CsrfField token={frame.csrfToken} />
        <label for="username">Username</label>
        <input id="username" name="username" autocomplete="username" required maxLength={64} value={username ?? ''} autofocus />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required maxLength={256} />
        <button type="submit">Log in</button>
      </form>
    </Layout>
  );
}

/** The password change form; a one-time password must be changed here before anything else. */
export function PasswordPage({ frame, error }: { frame: PageFrame; error?: CtOpsError }) {
  const forced = frame.admin?.mustChangePassword === true;
  return (
    <Layout frame={frame} title="Change password">
      <form method="post" action="/console/password" class="login">
        <h1>Change your password</h1>
        {forced && (
          <p class="notice" role="status">
            You logged in with a one-time password. Choose your own to continue.
          </p>
        )}
        {error && <ErrorBox error={error} />}
        <CsrfField token={frame.csrfToken} />
        {/* For password managers: which account this password belongs to (Chromium asks for it). */}
        <input type="text" name="username" autocomplete="username" value={frame.admin?.username ?? ''} hidden readOnly />
        <label for="current_password">Current password</label>
        <input id="current_password" name="current_password" type="password" autocomplete="current-password" required maxLength={256} autofocus />
        <label for="new_password">New password</label>
        <input id="new_password" name="new_password" type="password" autocomplete="new-password" required minLength={MIN_PASSWORD_LENGTH} maxLength={256} aria-describedby="password-rule" />
        <p id="password-rule" class="muted">
          At least {MIN_PASSWORD_LENGTH} characters; not your username. Your other sessions end.
        </p>
        <button type="submit">Change password</button>
      </form>
    </Layout>
  );
}

/** A refusal as a whole page (a link opened without the right, a host that is gone). */
export function ErrorPage({ frame, error }: { frame: PageFrame; error: CtOpsError }) {
  return (
    <Layout frame={frame} title="Refused">
      <h1>That did not work</h1>
      <ErrorBox error={error} />
      <p>
        <a href="/console/">Back to the overview</a>
      </p>
    </Layout>
  );
}
