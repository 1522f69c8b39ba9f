/**
 * The first admin's password under systemd, and its reset, on a real appliance process. With
 * stderr connected to the journal (JOURNAL_STREAM naming the device:inode of that very stream, as
 * systemd sets it), the password goes to DATA_DIR/initial-admin-password (0600), never to the
 * output, and the first login removes the file. `admin reset-password` (local CLI credential only)
 * gives a password that logs in; the old password and the sessions it opened stop working.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { STATUS } from '../common/errors.ts';
import { httpsJson, loginChangingPassword } from './helpers/https.ts';
import { APPLIANCE_BIN, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-admin-password-'));
const dataDir = join(scratch, 'data');
const outputPath = join(scratch, 'journal-stream.log');
const passwordFile = join(dataDir, 'initial-admin-password');
let appliance: ChildProcess;
let httpPort = 0;
let ca = '';

const output = (): string => readFileSync(outputPath, 'utf8');
const login = (password: string) => httpsJson(httpPort, ca, 'POST', '/api/v1/auth/login', { body: { username: 'admin', password } });
const resetPassword = (...flags: string[]) => run(process.execPath, [APPLIANCE_BIN, 'admin', 'reset-password', '--data-dir', dataDir, ...flags]);

before(async () => {
  // One file stands for the journal's stream: stdout and stderr both go to it, and JOURNAL_STREAM names it.
  const fd = openSync(outputPath, 'w');
  const stream = fstatSync(fd, { bigint: true });
  appliance = spawn(
    process.execPath,
    [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'localhost', '--san', '127.0.0.1'],
    { stdio: ['ignore', fd, fd], env: { ...process.env, JOURNAL_STREAM: `${stream.dev}:${stream.ino}` } },
  );
  closeSync(fd);
  const started = await waitFor('appliance started', () => {
    if (appliance.exitCode !== null) throw new Error(`the appliance exited ${appliance.exitCode}: ${output()}`);
    const line = output().split('\n').find((entry) => entry.includes('"msg":"appliance started"'));
    return line === undefined ? undefined : (JSON.parse(line) as { http_port: number });
  }, 30_000);
  httpPort = started.http_port;
  ca = readFileSync(join(dataDir, 'ca.crt'), 'utf8');
  // The welcome comes right after the start log line.
  await waitFor('the welcome', () => output().includes('Next steps'));
});
after(async () => {
  if (appliance.exitCode === null) {
    appliance.kill('SIGKILL');
    await once(appliance, 'exit');
  }
  rmSync(scratch, { recursive: true, force: true });
});

describe('the first admin password and its reset', () => {
  let firstPassword = '';
  let firstSession = '';

  test('with its output in the journal, serve writes the password to a 0600 file, prints only its path, and the first login removes the file', async () => {
    assert.ok(existsSync(passwordFile), `no ${passwordFile}; the appliance wrote:\n${output()}`);
    const stats = statSync(passwordFile);
    assert.equal(stats.mode & 0o777, 0o600);
    assert.equal(stats.uid, process.geteuid!(), 'owned by the account the appliance runs as');
    firstPassword = readFileSync(passwordFile, 'utf8').trim();
    assert.match(firstPassword, /^[A-Za-z0-9_-]{24}$/);
    const written = output();
    assert.ok(!written.includes(firstPassword), 'the password is in no line of the journal stream');
    assert.doesNotMatch(written, /^ {2}password: /m);
    assert.match(written, new RegExp(`password file: ${passwordFile}`));
    await waitFor('the file named in the log', () => output().includes(`"path":"${passwordFile}","msg":"first admin created; its one-time password is in a file`));

    const session = await login(firstPassword);
    assert.equal(session.status, 200, JSON.stringify(session.body));
    firstSession = session.body.token as string;
    assert.equal(existsSync(passwordFile), false, 'the first login removed the file');
    // Log lines may land after the answer: wait for it, bounded.
    await waitFor('the removal logged', () => output().includes('"msg":"removed the one-time password file of the first admin"'));
    assert.equal((await login(firstPassword)).status, 200, 'the password itself stays valid until a reset');
  });

  test('admin reset-password gives a one-time password that must be changed; the old password and its sessions stop working; the rules of a new password', async () => {
    const bySession = await httpsJson(httpPort, ca, 'POST', '/api/v1/admins/admin/reset-password', { bearer: firstSession });
    assert.equal(bySession.status, 403);
    assert.equal(bySession.body.error.code, 'ERR_PASSWORD_CHANGE_REQUIRED', 'a one-time session may do nothing else (and a changed one may not reset either: below)');

    const reset = await resetPassword('--json');
    assert.equal(reset.code, 0, reset.stderr);
    const answer = JSON.parse(reset.stdout) as { username: string; password: string; sessions_ended: number };
    assert.equal(answer.username, 'admin');
    assert.equal(answer.sessions_ended, 2, 'both sessions opened with the old password');
    assert.notEqual(answer.password, firstPassword);
    await waitFor('the reset logged', () => output().includes('"msg":"admin password reset"'));
    assert.ok(!output().includes(answer.password), 'the new password is not logged');

    const old = await login(firstPassword);
    assert.equal(old.status, 401);
    assert.equal(old.body.error.code, 'ERR_LOGIN_FAILED');
    assert.equal((await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: firstSession })).status, 401, 'the old session ended');
    const fresh = await login(answer.password);
    assert.equal(fresh.status, 200, JSON.stringify(fresh.body));
    assert.equal(fresh.body.must_change_password, true, 'a reset password is one-time too');
    const held = await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: fresh.body.token as string });
    assert.equal(held.body.error?.code, 'ERR_PASSWORD_CHANGE_REQUIRED');
    const change = (current: string, next: string) => httpsJson(httpPort, ca, 'POST', '/api/v1/auth/password', { bearer: fresh.body.token as string, body: { current_password: current, new_password: next } });
    for (const [next, why] of [['short', 'fewer than 12 characters'], [answer.password, 'the current password']] as const) {
      assert.equal((await change(answer.password, next)).body.error?.code, 'ERR_PASSWORD_REJECTED', why);
    }
    assert.equal((await change('not the current one', 'my own passphrase, long')).body.error?.code, 'ERR_LOGIN_FAILED', 'the current password is checked');
    const changed = await change(answer.password, 'my own passphrase, long');
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    assert.equal((await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: fresh.body.token as string })).status, 200, 'the changing session may now work');
    assert.equal((await login(answer.password)).status, 401, 'the one-time password is gone');
    assert.equal((await login('my own passphrase, long')).body.must_change_password, false);

    const shown = await resetPassword();
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^new password for admin \(2 login session\(s\) ended\); shown once, store it now; it must be changed at the first login:\n[A-Za-z0-9_-]{24}\n$/);
    const unknown = await resetPassword('--user', 'nobody');
    assert.equal(unknown.code, STATUS.ERR_ADMIN_USER_NOT_FOUND.exit);
    assert.match(unknown.stderr, /ERR_ADMIN_USER_NOT_FOUND/);
  });

  test('admin create/list/disable: a viewer reads and changes nothing; a session may not manage accounts; a disabled account is locked out', async () => {
    const cli = (...args: string[]) => run(process.execPath, [APPLIANCE_BIN, 'admin', ...args, '--data-dir', dataDir]);
    const created = await cli('create', 'night-shift-viewer', '--role', 'viewer', '--json');
    assert.equal(created.code, 0, created.stderr);
    const oneTime = (JSON.parse(created.stdout) as { password: string }).password;
    assert.equal((await cli('create', 'night-shift-viewer')).code, STATUS.ERR_ADMIN_USER_EXISTS.exit);
    assert.equal((await cli('create', 'bad name!')).code, STATUS.ERR_INVALID_ARGUMENT.exit, 'the username rule');

    const first = await httpsJson(httpPort, ca, 'POST', '/api/v1/auth/login', { body: { username: 'night-shift-viewer', password: oneTime } });
    const viewer = first.body.token as string;
    const changeTo = (next: string) => httpsJson(httpPort, ca, 'POST', '/api/v1/auth/password', { bearer: viewer, body: { current_password: oneTime, new_password: next } });
    assert.equal((await changeTo('NIGHT-SHIFT-VIEWER')).body.error?.code, 'ERR_PASSWORD_REJECTED', 'the username, in any case');
    assert.equal((await changeTo('the viewer chose this one')).status, 200);

    assert.equal((await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: viewer })).status, 200, 'a viewer reads');
    const write = await httpsJson(httpPort, ca, 'POST', '/api/v1/tokens', { bearer: viewer, body: {} });
    assert.equal(write.status, 403);
    assert.equal(write.body.error.code, 'ERR_ADMIN_FORBIDDEN');
    const zip = await httpsJson(httpPort, ca, 'GET', '/api/v1/bundles/bnd_0123456789abcdef0123456789abcdef', { bearer: viewer });
    assert.equal(zip.body.error?.code, 'ERR_ADMIN_FORBIDDEN', "a bundle's zip holds a token: not for a viewer");
    const mint = await httpsJson(httpPort, ca, 'POST', '/api/v1/admins', { bearer: viewer, body: { username: 'sneaky' } });
    assert.equal(mint.body.error?.code, 'ERR_ADMIN_FORBIDDEN');
    const reset = JSON.parse((await resetPassword('--json')).stdout) as { password: string };
    const adminSession = await loginChangingPassword(httpPort, ca, 'admin', reset.password, 'the admin chose this one');
    const bySession = await httpsJson(httpPort, ca, 'POST', '/api/v1/admins', { bearer: adminSession, body: { username: 'sneaky' } });
    assert.equal(bySession.body.error?.code, 'ERR_ADMIN_LOCAL_ONLY', "an admin's session may not mint accounts");

    const listed = await cli('list', '--json');
    const accounts = JSON.parse(listed.stdout) as Array<{ username: string; role: string; must_change_password: boolean; disabled_at: string | null }>;
    assert.deepEqual(accounts.map(({ username, role, must_change_password, disabled_at }) => [username, role, must_change_password, disabled_at]), [
      ['admin', 'admin', false, null],
      ['night-shift-viewer', 'viewer', false, null],
    ]);
    assert.equal((await cli('disable', 'admin')).code, STATUS.ERR_ADMIN_DISABLE_REFUSED.exit, "the CLI credential's own account stays");
    const disabled = await cli('disable', 'night-shift-viewer');
    assert.equal(disabled.code, 0, disabled.stderr);
    assert.match(disabled.stdout, /night-shift-viewer is disabled \(1 credential\(s\) ended\)/);
    assert.equal((await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: viewer })).status, 401, 'its session ended');
    const locked = await httpsJson(httpPort, ca, 'POST', '/api/v1/auth/login', { body: { username: 'night-shift-viewer', password: 'the viewer chose this one' } });
    assert.equal(locked.body.error?.code, 'ERR_LOGIN_FAILED', 'a disabled account logs in to nothing, like a wrong password');

    const logout = await httpsJson(httpPort, ca, 'POST', '/api/v1/auth/logout', { bearer: adminSession });
    assert.equal(logout.status, 204);
    assert.equal((await httpsJson(httpPort, ca, 'GET', '/api/v1/hosts', { bearer: adminSession })).status, 401, 'logged out');
  });
});
