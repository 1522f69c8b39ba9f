/**
 * The audit log (issue 13) on a real appliance process: admin actions through the CLI, a viewer's
 * refused write, failed logins and a lockout (API and console) with the username tried and the
 * source but never the password, an unauthenticated flood bounded per source, the JSON lines export
 * with its filters, and paging by cursor through the CLI.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { AUDIT_FLOOD_LIMIT } from '../appliance/audit/flood-gate.ts';
import { IngestFixture } from './helpers/ingest-fixture.ts';
import { httpsJson, loginChangingPassword } from './helpers/https.ts';
import { waitFor } from './helpers/wait.ts';

interface AuditRow {
  id: number;
  at: string;
  actor: string;
  actor_kind: string;
  source: string;
  action: string;
  target: Record<string, string>;
  outcome: string;
  error_code: string | null;
  status: number;
}

const fixture = new IngestFixture();
/** The password the failed logins try: it must appear nowhere in the database, the export or the log. */
const TRIED_PASSWORD = 'Tr0ub4dor-audit-never-stored';
let viewerToken = '';

before(async () => {
  await fixture.start({});
  const viewer = await fixture.appliance.cliJson<{ username: string; password: string }>('admin', 'create', 'auditor', '--role', 'viewer');
  viewerToken = await loginChangingPassword(fixture.appliance.httpPort, fixture.appliance.caCert, viewer.username, viewer.password, 'a viewer password of some length');
});
after(async () => {
  await fixture.stop();
});

/** The audit log as `audit export` writes it, with these filter flags: one JSON object per line. */
async function exported(...filters: string[]): Promise<AuditRow[]> {
  const result = await fixture.appliance.cli('audit', 'export', ...filters);
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stdout.split('\n');
  assert.equal(lines.pop(), '', 'the export ends with a newline');
  return lines.map((line) => JSON.parse(line) as AuditRow);
}

/** The rows of `filters` once `enough` holds for them (events are recorded just after each answer). */
const exportedOnce = (what: string, enough: (rows: AuditRow[]) => boolean, ...filters: string[]): Promise<AuditRow[]> =>
  waitFor(what, async () => {
    const rows = await exported(...filters);
    return enough(rows) && rows;
  });

const api = (method: string, path: string, options: { body?: unknown; bearer?: string } = {}) => httpsJson(fixture.appliance.httpPort, fixture.appliance.caCert, method, path, options);

describe('the audit log', () => {
  test('approving a host through the CLI is recorded with the admin, the action, the host and the outcome; reads and /healthz are not', async () => {
    const pending = await fixture.enrol({ autoApprove: false });
    const approved = await fixture.appliance.cli('hosts', 'approve', pending.hostId);
    assert.equal(approved.code, 0, approved.stderr);
    await fixture.appliance.hosts();
    assert.equal((await api('GET', '/healthz')).status, 200);

    const [row] = await exportedOnce('the approval', (rows) => rows.length === 1, '--action', 'hosts.approve');
    assert.deepEqual({ ...row, id: 0, at: '' }, {
      id: 0, at: '', actor: 'admin', actor_kind: 'cli', source: '127.0.0.1', action: 'hosts.approve', target: { id: pending.hostId }, outcome: 'ok', error_code: null, status: 200,
    });
    assert.ok(Math.abs(Date.parse(row!.at) - Date.now()) < 60_000, row!.at);
    const actions = new Set((await exported()).map((event) => event.action));
    assert.ok(actions.has('tokens.create'), 'the token the enrolment used');
    for (const read of ['hosts.read', 'healthz.read']) assert.ok(!actions.has(read), `${read} is not recorded: ${[...actions].join(', ')}`);
  });

  test("a viewer's write is recorded refused with ERR_ADMIN_FORBIDDEN and the viewer's name; viewers may not read the audit log either", async () => {
    const host = await fixture.enrol();
    assert.equal((await api('POST', `/api/v1/hosts/${host.hostId}/revoke`, { bearer: viewerToken })).status, 403);
    const denied = await api('GET', '/api/v1/audit', { bearer: viewerToken });
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error.code, 'ERR_ADMIN_FORBIDDEN');

    const rows = await exportedOnce('the viewer refusals', (found) => found.length === 2, '--actor', 'auditor', '--outcome', 'refused');
    assert.deepEqual(rows.map(({ action, actor_kind, target, error_code, status }) => ({ action, actor_kind, target, error_code, status })), [
      { action: 'audit.read', actor_kind: 'api-session', target: {}, error_code: 'ERR_ADMIN_FORBIDDEN', status: 403 },
      { action: 'hosts.revoke', actor_kind: 'api-session', target: { id: host.hostId }, error_code: 'ERR_ADMIN_FORBIDDEN', status: 403 },
    ]);
    const own = await exported('--actor', 'auditor', '--action', 'auth.password');
    assert.equal(own.length, 1, "the viewer's password change is recorded");
    assert.equal(own[0]!.outcome, 'ok');
  });

  test('failed logins and the lockout are recorded with the username tried and the source, never the password (database, export, log)', async () => {
    for (let attempt = 1; attempt <= 5; attempt += 1) {
      assert.equal((await api('POST', '/api/v1/auth/login', { body: { username: 'mallory', password: TRIED_PASSWORD } })).status, 401);
    }
    const locked = await api('POST', '/api/v1/auth/login', { body: { username: 'mallory', password: TRIED_PASSWORD } });
    assert.equal(locked.status, 429);
    const consoleLogin = await consoleLoginAttempt('eve', TRIED_PASSWORD);
    assert.equal(consoleLogin, 401);

    const rows = await exportedOnce('the logins', (found) => found.length === 7, '--action', 'auth.login', '--outcome', 'refused', '--since', new Date(Date.now() - 60_000).toISOString());
    // The console answers a failed login with its form again, not through fastify's error handling: the code is there only once the console sets request.answeredError.
    assert.deepEqual(rows.map(({ actor, actor_kind, source, status }) => ({ actor, actor_kind, source, status })), [
      { actor: 'eve', actor_kind: 'console', source: '127.0.0.1', status: 401 },
      ...Array.from({ length: 6 }, (_, index) => ({ actor: 'mallory', actor_kind: 'api-session', source: '127.0.0.1', status: index === 0 ? 429 : 401 })),
    ]);
    assert.deepEqual(rows.slice(1).map((row) => row.error_code), ['ERR_LOGIN_LOCKED', ...Array<string>(5).fill('ERR_LOGIN_FAILED')]);
    const ok = await exported('--action', 'auth.login', '--outcome', 'ok', '--actor', 'auditor');
    assert.equal(ok.length, 1, "the viewer's successful login");

    // The bytes of the database and its write-ahead log, as they are on the disk: read, never opened as a database.
    const database = ['appliance.db', 'appliance.db-wal'].map((name) => readFileSync(join(fixture.appliance.dataDir, name)).toString('latin1')).join('');
    assert.ok(database.includes('mallory'), 'the username tried is stored');
    assert.ok(!database.includes(TRIED_PASSWORD), 'the password is not in the database');
    assert.ok(!JSON.stringify(await exported()).includes(TRIED_PASSWORD), 'nor in the export');
    assert.ok(!JSON.stringify(fixture.appliance.process.events).includes(TRIED_PASSWORD) && !fixture.appliance.process.stderr.includes(TRIED_PASSWORD), 'nor in the log');
  });

  test(`an unauthenticated flood of 500 requests from one source records at most ${AUDIT_FLOOD_LIMIT} events in its minute`, async () => {
    // One clock minute for the whole flood: the gate's windows follow the clock.
    const intoMinute = Date.now() % 60_000;
    if (intoMinute > 45_000) await sleep(60_000 - intoMinute + 100);
    const started = Date.now();
    const statuses: number[] = [];
    for (let wave = 0; wave < 10; wave += 1) {
      statuses.push(...(await Promise.all(Array.from({ length: 50 }, () => api('GET', '/api/v1/hosts')))).map((answer) => answer.status));
    }
    assert.ok(Date.now() - started < 15_000, 'the flood fits in its minute');
    assert.deepEqual(new Set(statuses), new Set([401]));
    const minuteStart = new Date(started - (started % 60_000)).toISOString();
    const counted = async () => (await exported('--actor', '', '--action', 'hosts.read', '--since', minuteStart)).length;
    // Recorded just after each answer: counted once the number holds still.
    let recorded = await counted();
    for (let again = await counted(); again !== recorded; again = await counted()) recorded = again;
    assert.ok(recorded >= 1 && recorded <= AUDIT_FLOOD_LIMIT, `${recorded} recorded`);
  });

  test('the export is one JSON object per line, filtered by actor, action, outcome and time; a listing pages by cursor through every event once', async () => {
    const all = await exported();
    assert.ok(all.length > 20, `${all.length} events`);
    assert.deepEqual(all.map((row) => row.id), all.map((row) => row.id).sort((a, b) => b - a), 'newest first');
    const refused = await exported('--outcome', 'refused');
    assert.deepEqual(refused, all.filter((row) => row.outcome === 'refused' && row.id <= refused[0]!.id));
    const future = new Date(Date.now() + 3_600_000).toISOString();
    assert.deepEqual(await exported('--since', future), []);
    assert.equal((await exported('--until', all.at(-1)!.at)).length, 0, 'until is exclusive');
    const bad = await fixture.appliance.cli('audit', 'export', '--since', 'yesterday');
    assert.equal(bad.code, 65, 'ERR_INVALID_ARGUMENT');
    assert.match(bad.stderr, /ERR_INVALID_ARGUMENT/);

    // Paging from just above the export's newest event: each page's own read is recorded meanwhile, above it.
    const paged: number[] = [];
    let before: string | undefined = String(all[0]!.id + 1);
    while (before !== undefined) {
      const page = await fixture.appliance.cli('audit', 'list', '--limit', '7', '--before', before, '--json');
      assert.equal(page.code, 0, page.stderr);
      paged.push(...(JSON.parse(page.stdout) as AuditRow[]).map((row) => row.id));
      before = /--before (\d+)/.exec(page.stderr)?.[1];
    }
    assert.deepEqual(paged, all.map((row) => row.id));
    const reads = await exported('--action', 'audit.read', '--actor', 'admin');
    assert.ok(reads.length >= Math.ceil(all.length / 7), 'each read of the log is itself recorded');
  });
});

/** A login through the console's form: its page first (the CSRF cookie and token), then the post; resolves with the status. */
async function consoleLoginAttempt(username: string, password: string): Promise<number> {
  const page = await consoleCall('GET', '/console/login');
  const token = /name="_csrf" value="([^"]+)"/.exec(page.text)?.[1];
  assert.ok(token, 'the login page carries its CSRF token');
  const posted = await consoleCall('POST', '/console/login', page.cookies, new URLSearchParams({ username, password, _csrf: token }).toString());
  return posted.status;
}

function consoleCall(method: string, path: string, cookies: string[] = [], form?: string): Promise<{ status: number; text: string; cookies: string[] }> {
  return new Promise((resolve, reject) => {
    const sent = request(
      {
        host: 'localhost', port: fixture.appliance.httpPort, method, path, ca: fixture.appliance.caCert,
        headers: { cookie: cookies.join('; '), ...(form !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }) },
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, text, cookies: (response.headers['set-cookie'] ?? []).map((line) => line.split(';')[0]!) }));
      },
    );
    sent.on('error', reject);
    sent.end(form);
  });
}
