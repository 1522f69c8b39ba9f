/**
 * The admin console in a real browser (Debian's chromium, playwright-core) against a real appliance
 * and a real agent: log in with the one-time password and change it, see the agent pending, approve
 * it by keyboard, watch it turn online with no reload, the hosts list's filters and paging; a viewer
 * has no buttons and a forged approval is refused; a request without the CSRF token is refused;
 * hostnames that carry markup are shown as text. Every page: only the appliance's origin is asked
 * anything, no CSP violation, no page error, no serious or critical axe finding. Screenshots of each
 * page go to test-output/console/.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page, Response } from 'playwright-core';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { createFixtureAppliance, writeReleaseDir, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { BUNDLE_BIN, run } from './helpers/processes.ts';
import { launchBrowser, type BrowserHarness } from './helpers/browser.ts';
import { httpsJson } from './helpers/https.ts';
import { callRegister, HeartbeatStream, ingestClient, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { chunksOf, packages, submitScan } from './helpers/inventory.ts';
import { waitFor } from './helpers/wait.ts';

const OUTPUT = join(import.meta.dirname, '..', 'test-output', 'console');
const ADMIN_PASSWORD = 'correct horse battery staple';

let appliance: TestAppliance;
let browser: BrowserHarness;
let agent: TestAgent;
let origin = '';
let fixture: FixtureAppliance;

before(async () => {
  mkdirSync(OUTPUT, { recursive: true });
  // A data directory with a release and templates for the bundler (test/helpers/bundler-fixtures.ts).
  fixture = await createFixtureAppliance();
  appliance = await TestAppliance.start({ dataDir: fixture.dataDir, sans: ['127.0.0.1', 'localhost'], env: { CT_OPS_BUNDLE_AGENTS_DIR: fixture.agentsDir, CT_OPS_BUNDLE_TEMPLATES_DIR: fixture.templatesDir } });
  origin = `https://127.0.0.1:${appliance.httpPort}`;
  browser = await launchBrowser({ origin, serverCertPem: readFileSync(join(appliance.dataDir, 'server.crt'), 'utf8'), outputDir: OUTPUT });
});
after(async () => {
  await browser?.close();
  await agent?.dispose();
  await appliance?.dispose();
  rmSync(fixture.root, { recursive: true, force: true });
});

/** Every check a page must pass wherever the journey goes. */
async function checkPage(page: Page, name: string): Promise<void> {
  await browser.assertNoCspViolations(page);
  await browser.assertAccessible(page, name);
  await browser.screenshot(page, name);
}

async function logIn(page: Page, username: string, password: string): Promise<void> {
  await page.goto(`${origin}/console/login`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForLoadState('load');
}

/**
 * Reloads `page` until `check` holds (a page that does not follow the change by itself: the chart, the
 * inventory). After each load `check` is polled for a few seconds first: what the page does after its
 * load (the chart's script fetches and draws) must not be cut short by the next reload on a busy machine.
 */
async function expectWithReloads(page: Page, check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const settled = Math.min(Date.now() + 5_000, deadline);
    while (Date.now() < settled) {
      if (await check()) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    assert.ok(Date.now() < deadline, `not so within ${timeoutMs} ms on ${page.url()}`);
    await page.reload();
  }
}

/** A POST made by the page itself (same origin, its cookies), as a forged form or script would: its status and body. */
async function postFromPage(page: Page, path: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  return page.evaluate(
    `fetch(${JSON.stringify(path)}, { method: 'POST', headers: ${JSON.stringify(headers)}, redirect: 'manual' }).then(async (answer) => ({ status: answer.status, text: await answer.text() }))`,
  );
}

/** The CSRF token the page's htmx requests send (the body's hx-headers). */
async function csrfTokenOf(page: Page): Promise<string> {
  const headers = await page.locator('body').getAttribute('hx-headers');
  return (JSON.parse(headers ?? '{}') as Record<string, string>)['x-csrf-token'] ?? '';
}

describe('the admin console in a real browser', () => {
  let page: Page;

  test('the first admin logs in with the one-time password, must change it, and lands on the overview', async () => {
    page = await browser.newPage();
    const oneTime = /password: (\S+)/.exec(appliance.process.stderr)?.[1];
    assert.ok(oneTime, 'the first start printed the one-time password');
    const first = await page.goto(`${origin}/`);
    assert.equal(new URL(page.url()).pathname, '/console/login', 'the root leads to the login page');
    assert.match(String(first?.headers()['content-security-policy']), /script-src 'self'.*style-src 'self'/);
    assert.doesNotMatch(String(first?.headers()['content-security-policy']), /unsafe-inline|unsafe-eval/);
    assert.equal(first?.headers()['x-frame-options'], 'DENY');
    assert.match(String(first?.headers()['strict-transport-security']), /max-age=/);
    assert.equal(first?.headers()['cache-control'], 'no-store');
    await checkPage(page, 'login');

    await logIn(page, 'admin', 'not the password');
    await assert.doesNotReject(page.getByRole('alert').filter({ hasText: 'wrong username or password' }).waitFor());

    await logIn(page, 'admin', oneTime);
    assert.equal(new URL(page.url()).pathname, '/console/password', 'a one-time password must be changed first');
    const cookies = await page.context().cookies();
    const session = cookies.find((cookie) => cookie.name === '__Host-ctops_session');
    assert.ok(session && session.httpOnly && session.secure && session.sameSite === 'Strict', JSON.stringify(cookies));
    await page.goto(`${origin}/console/hosts`);
    assert.equal(new URL(page.url()).pathname, '/console/password', 'nothing else opens before the change');
    await checkPage(page, 'password-change');
    await page.getByLabel('Current password').fill(oneTime);
    await page.getByLabel('New password').fill(ADMIN_PASSWORD);
    await page.getByRole('button', { name: 'Change password' }).click();
    await page.waitForURL(`${origin}/console/`);
    await page.getByRole('heading', { name: 'Overview' }).waitFor();
    await checkPage(page, 'overview');
  });

  test('a real agent appears pending without a reload, is approved by keyboard, and turns online in the hosts list without a reload', async () => {
    await page.goto(`${origin}/console/pending`);
    await page.getByText('No host is waiting for approval.').waitFor();
    let loads = 0;
    page.on('load', () => (loads += 1));

    const { token } = await appliance.createToken();
    agent = new TestAgent({ address: `127.0.0.1:${appliance.grpcPort}`, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 5 });
    agent.start();
    const card = page.locator('section.card').first();
    await card.waitFor({ timeout: 30_000 });
    assert.equal(loads, 0, 'the pending host appeared with no reload');
    const [pending] = await appliance.hosts();
    assert.ok(pending);
    assert.equal(pending.status, 'pending');
    const facts = await card.innerText();
    assert.ok(facts.includes(pending.hostname) && facts.includes(pending.id), facts);
    assert.match(facts, /Key fingerprint\s+SHA256:[A-Za-z0-9+/]{43}/);
    assert.match(facts, /Machine fingerprint\s+[0-9a-f]{16,}/);
    const [issued] = await appliance.cliJson<Array<{ id: string }>>('tokens', 'list');
    assert.ok(facts.includes(issued!.id), 'the token it came with');
    await checkPage(page, 'pending');

    // Keyboard only: Tab to the Approve button, Enter.
    for (let step = 0; step < 40; step += 1) {
      await page.keyboard.press('Tab');
      if ((await page.evaluate('document.activeElement && document.activeElement.textContent')) === 'Approve') break;
    }
    assert.equal(await page.evaluate('document.activeElement.textContent'), 'Approve', 'Approve is reachable by Tab');
    await page.keyboard.press('Enter');
    await page.getByText('No host is waiting for approval.').waitFor();

    await page.goto(`${origin}/console/hosts`);
    loads = 0;
    const row = page.locator(`tr[data-host-id="${pending.id}"]`);
    await row.locator('.status-online').waitFor({ timeout: 30_000 });
    assert.equal(loads, 0, 'online without a reload');
    await checkPage(page, 'hosts');
  });

  test('the hosts list filters, searches and sorts in the URL, and says when nothing matches', async () => {
    await page.goto(`${origin}/console/hosts?status=offline`);
    await page.getByText('No host matches.').waitFor();
    await page.getByLabel('Status').selectOption('online');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForLoadState('load');
    assert.equal(new URL(page.url()).searchParams.get('status'), 'online');
    assert.equal(await page.locator('tbody tr').count(), 1);
    await page.getByRole('link', { name: 'Hostname' }).click();
    await page.waitForLoadState('load');
    assert.equal(await page.locator('th[aria-sort]').getAttribute('aria-sort'), 'descending', 'a second click on the sorted column reverses it');
    const bad = await page.goto(`${origin}/console/hosts?sort=password`);
    assert.equal(bad?.status(), 400);
    await page.getByText('ERR_INVALID_ARGUMENT').waitFor();
  });

  test("the host page: the vitals chart, the agent's real inventory after a rescan, Show removed, and delete with uninstall", async () => {
    const [host] = (await appliance.hosts()).filter((entry) => entry.status === 'online');
    assert.ok(host);
    await page.goto(`${origin}/console/hosts`);
    await page.getByRole('link', { name: host.hostname }).click();
    await page.waitForURL(`${origin}/console/hosts/${host.id}`);
    await page.getByRole('heading', { name: host.hostname, level: 1 }).waitFor();
    // The chart is drawn from the samples stored so far (one per heartbeat interval): at least one by now.
    await expectWithReloads(page, async () => (await page.locator('[data-vitals][data-drawn]').count()) === 1, 60_000);
    assert.equal(await page.locator('[data-vitals] canvas').count() > 0, true, 'uPlot drew on a canvas');

    await page.getByRole('button', { name: 'Rescan' }).click();
    await page.waitForURL(`${origin}/console/hosts/${host.id}#software`);
    // The agent collects this machine's real package list (dpkg) and sends it in chunks.
    await expectWithReloads(page, async () => (await page.locator('#software ~ table tbody tr').count()) > 50, 90_000);
    const names = await page.locator('#software ~ table tbody tr td:first-child').allInnerTexts();
    assert.ok(names.includes('dpkg') && names.includes('bash'), `real packages: ${names.slice(0, 10).join(', ')}`);
    assert.match(await page.locator('h2:has-text("Tasks") + table').innerText(), /software_inventory\s+succeeded\s+admin/);
    assert.match(await page.locator('h2:has-text("Scans") + table').innerText(), /completed/);

    const toggle = page.getByRole('switch', { name: 'Show removed' });
    assert.equal(await toggle.getAttribute('aria-checked'), 'false');
    await toggle.click();
    await page.waitForURL(/removed=1/);
    assert.equal(await page.getByRole('switch', { name: 'Hide removed' }).getAttribute('aria-checked'), 'true');
    await checkPage(page, 'host');

    await page.getByLabel('Also uninstall agent from the remote host').check();
    await page.getByRole('button', { name: 'Delete host' }).click();
    await page.waitForURL(`${origin}/console/hosts/${host.id}`);
    assert.match(await page.locator('h2:has-text("Tasks") + table').innerText(), /agent_uninstall\s+\w+\s+admin/, 'the uninstall was asked of the agent, by admin');
  });

  test('an enrolment token is created with its secret shown once (not after a reload), listed with its uses, and revoked', async () => {
    await page.goto(`${origin}/console/tokens`);
    await page.getByLabel('Label').fill('rack 7');
    await page.getByLabel('Hosts that may enrol with it').fill('2');
    await page.getByLabel('Tags (key=value, comma-separated)').fill('site=lab, role=web');
    await page.getByRole('button', { name: 'Create token' }).click();
    const secret = (await page.locator('#new-token').innerText()).trim();
    assert.match(secret, /^tok_[A-Za-z0-9_-]{20,}$/);
    await checkPage(page, 'tokens-created');
    const row = page.locator('tr', { hasText: 'rack 7' });
    assert.match(await row.innerText(), /active\s+0 of 2/);
    assert.match(await row.innerText(), /site=lab/);
    await page.goto(`${origin}/console/tokens`);
    assert.equal(await page.locator('#new-token').count(), 0);
    assert.ok(!(await page.content()).includes(secret), 'the secret is gone once the page is left');
    // The token the real agent enrolled with names it, with the time.
    const enrolled = (await appliance.hosts()).find((host) => host.enrolment_token_id !== null && !String(host.hostname).includes('<'));
    assert.ok(enrolled);
    const used = await page.locator('tr', { hasText: String(enrolled.enrolment_token_id) }).innerText();
    assert.ok(used.includes(enrolled.hostname) && /1 of 1/.test(used), used);
    await page.getByRole('button', { name: /^Revoke etk_/ }).first().click();
    await page.waitForURL(`${origin}/console/tokens`);
    assert.ok((await page.locator('td', { hasText: 'revoked' }).count()) >= 1);
  });

  test('an install bundle is built in the console, downloaded, and verifies with ct-ops-bundle verify', async () => {
    await page.goto(`${origin}/console/bundles`);
    await page.getByLabel('Ingest address (host:port; several, comma-separated)').fill('ingest.example:9443');
    await page.getByLabel('Tags (key=value, comma-separated)').fill('site=lab');
    await page.getByRole('button', { name: 'Build bundle' }).click();
    const link = page.getByRole('link', { name: /^download ct-ops-agent-/ });
    await link.waitFor();
    const shown = await page.locator('.notice').innerText();
    const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
    const file = join(OUTPUT, download.suggestedFilename());
    await download.saveAs(file);
    const verified = await run(process.execPath, [BUNDLE_BIN, 'verify', file, '--pubkey', join(fixture.dataDir, 'bundle.pub')]);
    assert.equal(verified.code, 0, verified.stderr + verified.stdout);
    const sha256 = (await run('sha256sum', [file])).stdout.split(' ')[0]!;
    assert.ok(shown.includes(sha256), 'the SHA-256 shown is the downloaded file\'s');
    rmSync(file);
    await page.goto(`${origin}/console/bundles`);
    assert.match(await page.locator('tbody').innerText(), /bnd_[0-9a-f]{20}\s+linux x64/);
    await checkPage(page, 'bundles');
  });

  test('software: which hosts have a package, in a version range, exported as CSV', async () => {
    await page.goto(`${origin}/console/software`);
    await page.getByLabel('Package name (exact)').fill('bash');
    await page.getByRole('button', { name: 'Find hosts' }).click();
    await page.getByText('1 host(s) have bash.').waitFor();
    await page.getByLabel('From version').fill('999');
    await page.getByRole('button', { name: 'Find hosts' }).click();
    await page.getByText('0 host(s) have bash.').waitFor();
    await page.goto(`${origin}/console/software?name=dpkg`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export as CSV' }).click()]);
    const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'host_id,hostname,name,version,architecture,source,first_seen,removed_at');
    assert.equal(csv.length, 2);
    assert.match(csv[1]!, /^hst_[0-9a-f]{20},[^,]+,dpkg,[^,]+,amd64,dpkg,\d{4}-/);
    await checkPage(page, 'software');
  });

  test('markup in a hostname is shown as text: no script runs', async () => {
    const client = ingestClient(`127.0.0.1:${appliance.grpcPort}`, readFileSync(appliance.caCertPath, 'utf8'));
    const { token } = await appliance.createToken('--max-uses', '3');
    const hostile = ['<script>window.__xss = 1</script>', '"><img src=x onerror="window.__xss = 2">', '<svg onload=window.__xss=3>'];
    for (const hostname of hostile) {
      const registered = await callRegister(client, signedRegister(newIdentity(hostname), token));
      assert.ok(registered.ok, JSON.stringify(registered));
    }
    client.close();
    await page.goto(`${origin}/console/pending`);
    for (const hostname of hostile) await page.getByRole('heading', { name: hostname, exact: true }).waitFor();
    assert.equal(await page.evaluate('window.__xss'), undefined);
    assert.equal(await page.locator('main img, main svg').count(), 0, 'no element was made from a hostname');
    await browser.assertNoCspViolations(page);
  });

  test("markup in a tag, a package name and a task's message is shown as text: no script runs", async () => {
    const client = ingestClient(`127.0.0.1:${appliance.grpcPort}`, readFileSync(appliance.caCertPath, 'utf8'));
    const tag = '<img src=x onerror="window.__xss = 5">';
    const packageName = '<script>window.__xss = 6</script>';
    const message = '<iframe src="javascript:window.__xss = 7"></iframe>';
    const { token } = await appliance.createToken('--auto-approve', '--tag', `note:${tag}`);
    const registered = await callRegister(client, signedRegister(newIdentity('stand-in-agent'), token));
    assert.ok(registered.ok && registered.value.status === 'AGENT_STATUS_ACTIVE', JSON.stringify(registered));
    const hostId = registered.value.agent_id;
    const stream = new HeartbeatStream(client, registered.value.jwt);
    stream.send(hostId, 1);
    const scan = await submitScan(client, registered.value.jwt, chunksOf(hostId, randomUUID(), [...packages(0, 2), ...packages(0, 1, { name: packageName })]));
    assert.ok(scan.ok, JSON.stringify(scan));
    assert.equal((await appliance.cli('hosts', 'reload-config', hostId)).code, 0);
    const task = await waitFor('the task pushed', () => stream.received.find((received) => received.task?.kind === 'config_reload')?.task ?? undefined);
    stream.send(hostId, 2, { task_updates: [{ task_id: task.task_id, phase: 'TASK_PHASE_FAILED', error_code: 'ERR_CONFIG_INVALID', message }] });
    await waitFor('the report acknowledged', () => stream.acks().includes(2));

    await page.goto(`${origin}/console/hosts?q=stand-in`);
    await page.getByText(`note=${tag}`).waitFor();
    await page.goto(`${origin}/console/hosts/${hostId}`);
    await page.getByRole('cell', { name: packageName, exact: true }).waitFor();
    await expectWithReloads(page, async () => (await page.getByText(message).count()) > 0, 20_000);
    assert.equal(await page.evaluate('window.__xss'), undefined);
    assert.equal(await page.locator('main img, main iframe, main script').count(), 0, 'no element was made from agent or admin text');
    await browser.assertNoCspViolations(page);
    stream.call.end();
    client.close();
  });

  test('a state-changing request without the CSRF token, or with a wrong one, is refused with ERR_CSRF_INVALID', async () => {
    const [first] = (await appliance.hosts()).filter((host) => host.status === 'pending');
    assert.ok(first);
    for (const headers of [{}, { 'x-csrf-token': 'forged' }] as Array<Record<string, string>>) {
      const answer = await postFromPage(page, `/console/hosts/${first.id}/approve`, headers);
      assert.equal(answer.status, 403);
      assert.match(answer.text, /ERR_CSRF_INVALID/);
    }
    assert.equal((await appliance.host(first.id)).status, 'pending', 'nothing was approved');
  });

  test('a viewer sees the pending hosts but no button, and its forged approval is refused', async () => {
    const created = await appliance.cliJson<{ password: string }>('admin', 'create', 'auditor', '--role', 'viewer');
    const context = await browser.newContext();
    const viewer = await context.newPage();
    await logIn(viewer, 'auditor', created.password);
    await viewer.getByLabel('Current password').fill(created.password);
    await viewer.getByLabel('New password').fill('the auditor reads only');
    await viewer.getByRole('button', { name: 'Change password' }).click();
    await viewer.waitForURL(`${origin}/console/`);
    await viewer.goto(`${origin}/console/pending`);
    await viewer.locator('section.card').first().waitFor();
    assert.equal(await viewer.getByRole('button', { name: 'Approve' }).count(), 0, 'no approve button for a viewer');
    const [first] = (await appliance.hosts()).filter((host) => host.status === 'pending');
    const forged = await postFromPage(viewer, `/console/hosts/${first!.id}/approve`, { 'x-csrf-token': await csrfTokenOf(viewer) });
    assert.equal(forged.status, 403);
    assert.match(forged.text, /ERR_ADMIN_FORBIDDEN/);
    assert.equal((await appliance.host(first!.id)).status, 'pending');
    await checkPage(viewer, 'pending-viewer');
    await context.close();
  });

  test('wrong passwords lock the account: the console says so, with the wait (Retry-After)', async () => {
    const context = await browser.newContext();
    const guesser = await context.newPage();
    // The lock starts at 1 s after 5 failures and doubles with each further one: a slow machine may
    // outlast the first locks between two attempts, never the later ones.
    let answer: Response | undefined;
    for (let attempt = 0; attempt < 15 && answer?.status() !== 429; attempt += 1) {
      await guesser.goto(`${origin}/console/login`);
      await guesser.getByLabel('Username').fill('auditor');
      await guesser.getByLabel('Password').fill(`guess ${attempt}`);
      [answer] = await Promise.all([guesser.waitForResponse((response) => response.url().endsWith('/console/login') && response.request().method() === 'POST'), guesser.getByRole('button', { name: 'Log in' }).click()]);
    }
    assert.equal(answer!.status(), 429);
    assert.ok(Number(answer!.headers()['retry-after']) >= 1);
    await guesser.getByRole('alert').filter({ hasText: 'ERR_LOGIN_LOCKED' }).waitFor();
    await context.close();
  });

  test('agent releases: the imported release, the rollout with its groups; pause and resume from the console', async () => {
    await page.goto(`${origin}/console/releases`);
    await page.getByText('No rollout was started').waitFor();
    const media = writeReleaseDir(join(fixture.root, 'media'), fixture.releaseKey, { version: '9.9.9' });
    assert.equal((await appliance.cli('releases', 'import', media)).code, 0);
    const started = await appliance.cli('releases', 'rollout', '9.9.9', '--group', 'everyone=all');
    assert.equal(started.code, 0, started.stderr);
    await page.goto(`${origin}/console/releases`);
    assert.match(await page.locator('tbody').first().innerText(), /9\.9\.9[\s\S]*active/);
    assert.match(await page.locator('main').innerText(), /Version 9\.9\.9: running/);
    assert.deepEqual(await page.locator('h2:has-text("Rollout") ~ table tbody tr td:first-child').allInnerTexts(), ['everyone']);
    await checkPage(page, 'releases');
    await page.getByRole('button', { name: 'Pause rollout' }).click();
    await page.getByText('Version 9.9.9: paused').waitFor();
    assert.equal((await appliance.cliJson<{ rollout: { state: string } }>('releases', 'status')).rollout.state, 'paused');
    await page.getByRole('button', { name: 'Resume rollout' }).click();
    await page.getByText('Version 9.9.9: running').waitFor();
  });

  test('the overview lists what needs attention: pending hosts and the uninstall the agent could not do (no root helper here)', async () => {
    await page.goto(`${origin}/console/`);
    const attention = page.locator('h2:has-text("Needs attention") + ul');
    assert.match(await attention.innerText(), /3 host\(s\) waiting for approval/);
    await expectWithReloads(page, async () => /agent_uninstall\) failed/.test(await attention.innerText()), 60_000);
    assert.match(await attention.innerText(), /ERR_UNINSTALL_UNAVAILABLE|ERR_/);
  });

  test('API tokens: made in the console, shown once; a read token reads and may not change; a write token changes; revoked, refused', async () => {
    const makeToken = async (description: string, scope: 'read and change' | 'read only'): Promise<string> => {
      await page.goto(`${origin}/console/api-tokens`);
      await page.getByLabel('Description').fill(description);
      await page.getByLabel('May').selectOption({ label: scope });
      await page.getByLabel('Valid for (days)').fill('30');
      await page.getByRole('button', { name: 'Create API token' }).click();
      return (await page.locator('#new-api-token').innerText()).trim();
    };
    const reader = await makeToken('nightly export', 'read only');
    assert.match(reader, /^ctapi_/);
    await checkPage(page, 'api-tokens');
    const writer = await makeToken('ticket sync', 'read and change');
    const ca = readFileSync(appliance.caCertPath, 'utf8');
    assert.equal((await httpsJson(appliance.httpPort, ca, 'GET', '/api/v1/hosts', { bearer: reader })).status, 200);
    const refused = await httpsJson(appliance.httpPort, ca, 'POST', '/api/v1/tokens', { bearer: reader, body: {} });
    assert.equal(refused.body.error?.code, 'ERR_ADMIN_FORBIDDEN');
    assert.equal((await httpsJson(appliance.httpPort, ca, 'POST', '/api/v1/tokens', { bearer: writer, body: {} })).status, 201);
    assert.equal((await httpsJson(appliance.httpPort, ca, 'POST', '/api/v1/admins', { bearer: writer, body: { username: 'minted' } })).body.error?.code, 'ERR_ADMIN_LOCAL_ONLY', 'no account management');
    await page.goto(`${origin}/console/api-tokens`);
    assert.ok(!(await page.content()).includes(reader), 'secrets are not listed');
    const row = await page.locator('tr', { hasText: 'nightly export' }).innerText();
    assert.match(row, /read only/);
    assert.doesNotMatch(row, /never/, 'its last use is shown');
    await page.locator('tr', { hasText: 'nightly export' }).getByRole('button', { name: /^Revoke/ }).click();
    await page.waitForURL(`${origin}/console/api-tokens`);
    assert.equal((await httpsJson(appliance.httpPort, ca, 'GET', '/api/v1/hosts', { bearer: reader })).status, 401, 'revoked');
    assert.equal((await httpsJson(appliance.httpPort, ca, 'GET', '/api/v1/hosts', { bearer: writer })).status, 200, 'the other token stays');
  });

  test('the admin API is documented by an OpenAPI document generated from its route schemas, shown in the console', async () => {
    const cli = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    const answer = await httpsJson(appliance.httpPort, readFileSync(appliance.caCertPath, 'utf8'), 'GET', '/api/v1/openapi.json', { bearer: cli });
    assert.equal(answer.status, 200);
    const document = answer.body as { openapi: string; paths: Record<string, Record<string, { requestBody?: unknown; parameters?: unknown[] }>> };
    assert.equal(document.openapi, '3.1.0');
    const paths = Object.keys(document.paths);
    assert.ok(paths.every((path) => path.startsWith('/api/v1/')), `only the API: ${paths.filter((path) => !path.startsWith('/api/v1/')).join(', ')}`);
    for (const path of ['/api/v1/hosts', '/api/v1/hosts/{id}/approve', '/api/v1/tokens', '/api/v1/bundles', '/api/v1/audit', '/api/v1/auth/login', '/api/v1/releases/minimum']) assert.ok(paths.includes(path), path);
    assert.ok(document.paths['/api/v1/tokens']!.post!.requestBody, 'bodies come from the route schemas');
    assert.ok(paths.length >= 40, `${paths.length} paths`);
    await page.goto(`${origin}/console/api`);
    await page.getByText('POST /api/v1/hosts/{id}/approve', { exact: true }).click();
    await page.locator('details[open]').getByText('"hostname"').first().waitFor();
    await checkPage(page, 'api');
  });

  test("the audit log shows the journey's actions and refusals (who, what, from where), filters them and exports JSON lines", async () => {
    await page.goto(`${origin}/console/audit`);
    const rows = await page.locator('tbody').innerText();
    assert.match(rows, /admin \(console\)\s+127\.0\.0\.1\s+hosts\.approve\s+hst_[0-9a-f]{20}\s+ok/);
    assert.match(rows, /auditor \(console\)\s+127\.0\.0\.1\s+hosts\.approve\s+hst_[0-9a-f]{20}\s+refused ERR_ADMIN_FORBIDDEN 403/);
    assert.match(rows, /refused ERR_CSRF_INVALID 403/);
    assert.match(rows, /auditor \(console\)\s+127\.0\.0\.1\s+auth\.login\s+refused ERR_LOGIN_LOCKED 429/);
    assert.match(rows, /tokens\.create[\s\S]*ok/);
    await checkPage(page, 'audit');
    await page.getByLabel('Outcome').selectOption('refused');
    await page.getByRole('button', { name: 'Filter' }).click();
    await page.waitForURL(/outcome=refused/);
    assert.doesNotMatch(await page.locator('tbody').innerText(), /\bok\b/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('link', { name: 'Export as JSON lines' }).click()]);
    const events = readFileSync(await download.path(), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { outcome: string; actor: string; action: string });
    assert.ok(events.length >= 5 && events.every((event) => event.outcome === 'refused'), JSON.stringify(events.slice(0, 3)));
    assert.ok(!readFileSync(await download.path(), 'utf8').includes(ADMIN_PASSWORD), 'no password in the log');
  });

  test('logging out ends the session; the journey asked nothing of any other origin and logged no CSP report', async () => {
    await page.goto(`${origin}/console/`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${origin}/console/login`);
    await page.goto(`${origin}/console/hosts`);
    assert.equal(new URL(page.url()).pathname, '/console/login', 'the session is gone');
    browser.assertOnlyOrigin();
    // Chromium logs every 4xx answer as a console error: those are the refusals this journey asked for.
    const refusals = /Failed to load resource: the server responded with a status of (400|401|403|429) /;
    assert.deepEqual(browser.pageErrors.filter((error) => !refusals.test(error)), [], 'no script error, no other failed load');
    assert.ok(browser.requests.length > 20, `${browser.requests.length} requests recorded`);
    assert.deepEqual(appliance.process.events.filter((event) => event.msg === 'console CSP violation reported'), []);
  });
});
