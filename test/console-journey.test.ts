/**
 * The admin console in a real browser (Debian's chromium, playwright-core) against a real appliance
 * and a real agent: log in with the one-time password and change it, see the agent pending, approve
 * it by keyboard, watch it turn online with no reload, the hosts list's filters and paging; its host
 * page follows it live (chart, heartbeat, a rescan's task and scan), its real inventory and Show
 * removed; delete with uninstall (as root the agent starts a stand-in uninstaller that reports);
 * reject and approve as replacement; a viewer has no buttons and a forged approval is refused; a
 * request without the CSRF token is refused; an ended session's open pages go to the login page;
 * markup in agent text is shown as text. Actions are taken by keyboard (Tab, Enter, Space) where a
 * user would. Every page: only the appliance's origin is asked anything, no CSP violation, no page
 * error, no serious or critical axe finding. Screenshots of each page go to test-output/console/.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseToml } from 'smol-toml';
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
import { standInEnv, standInMarker, STANDIN_REMOVED, UNINSTALL_LOG, writeStandInUninstaller } from './helpers/uninstaller.ts';
import { waitFor } from './helpers/wait.ts';

const OUTPUT = join(import.meta.dirname, '..', 'test-output', 'console');
const ADMIN_PASSWORD = 'correct horse battery staple';

let appliance: TestAppliance;
let browser: BrowserHarness;
let agent: TestAgent;
let origin = '';
let fixture: FixtureAppliance;
/** The real agent's host once approved: later steps delete it, and its token names it. */
let enrolled: { id: string; hostname: string; tokenId: string };
/** As root (CI), the real agent starts a stand-in uninstaller itself (test/helpers/uninstaller.ts); otherwise it cannot uninstall. */
const ROOT = process.getuid?.() === 0;

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
  if (ROOT) rmSync(UNINSTALL_LOG, { force: true });
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
 * Moves the focus with Tab, as a keyboard user does, until the focused element is named `name` (its
 * aria-label, its label's text for a form field, or its text); fails after `maxSteps` presses.
 */
async function tabTo(page: Page, name: string | RegExp, maxSteps = 120): Promise<void> {
  const matches = (text: string) => (typeof name === 'string' ? text === name : name.test(text));
  const focused = () => page.evaluate<string>(`(() => { const e = document.activeElement; if (!e || e === document.body) return ''; return (e.getAttribute('aria-label') || (e.labels && e.labels[0] ? e.labels[0].textContent : e.textContent) || '').trim(); })()`);
  for (let step = 0; step < maxSteps; step += 1) {
    await page.keyboard.press('Tab');
    if (matches(await focused())) return;
  }
  assert.fail(`no element named ${String(name)} reachable by Tab on ${page.url()}`);
}

/** Presses Enter on the focused button of a form and waits for the page the form's answer leads to. */
async function submitByEnter(page: Page): Promise<void> {
  await Promise.all([page.waitForEvent('load'), page.keyboard.press('Enter')]);
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
    agent.start([], ROOT ? standInEnv(writeStandInUninstaller(agent.root), agent, 'succeeded') : {});
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
    await tabTo(page, 'Approve');
    await submitByEnter(page);
    await page.getByText('No host is waiting for approval.').waitFor();
    enrolled = { id: pending.id, hostname: pending.hostname, tokenId: issued!.id };

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

  test("the host page follows its host with no reload: vitals chart and last heartbeat, a rescan's task and scan; then the agent's real inventory and Show removed", async () => {
    await page.goto(`${origin}/console/hosts`);
    await page.getByRole('link', { name: enrolled.hostname }).click();
    await page.waitForURL(`${origin}/console/hosts/${enrolled.id}`);
    await page.getByRole('heading', { name: enrolled.hostname, level: 1 }).waitFor();
    let loads = 0;
    page.on('load', () => (loads += 1));
    // The chart is drawn from the samples stored so far (5-minute buckets of one sample per heartbeat,
    // every 5 s here) and drawn again at each heartbeat the page is told of, with no reload.
    const draws = async () => Number((await page.locator('[data-vitals]').getAttribute('data-draws')) ?? 0);
    await waitFor('the chart drawn', async () => Number(await page.locator('[data-vitals]').getAttribute('data-drawn')) >= 1, 30_000);
    assert.ok((await page.locator('[data-vitals] canvas').count()) > 0, 'uPlot drew on a canvas');
    const firstDraws = await draws();
    const heartbeatShown = () => page.locator('#host-summary time').first().getAttribute('datetime');
    const firstHeartbeat = await heartbeatShown();
    await waitFor('a newer heartbeat shown, the chart drawn again', async () => (await heartbeatShown()) !== firstHeartbeat && (await draws()) > firstDraws, 30_000);

    // Keyboard: Tab to Rescan, Enter. The task's steps and the scan appear as they happen.
    await tabTo(page, 'Rescan');
    await submitByEnter(page);
    await page.waitForURL(`${origin}/console/hosts/${enrolled.id}#software`);
    loads = 0;
    const tasks = page.locator('h2:has-text("Tasks") + table');
    await waitFor('the rescan succeeded, shown live', async () => /software_inventory\s+succeeded\s+admin/.test(await tasks.innerText()), 90_000);
    await waitFor('the scan completed, shown live', async () => /completed/.test(await page.locator('h2:has-text("Scans") + table').innerText()), 30_000);
    assert.equal(loads, 0, 'the task and the scan were followed with no reload');
    await checkPage(page, 'host-live');

    // The agent collected this machine's real package list (dpkg) and sent it in chunks.
    await page.reload();
    assert.ok((await page.locator('#software ~ table tbody tr').count()) > 50);
    const names = await page.locator('#software ~ table tbody tr td:first-child').allInnerTexts();
    assert.ok(names.includes('dpkg') && names.includes('bash'), `real packages: ${names.slice(0, 10).join(', ')}`);

    const toggle = page.getByRole('switch', { name: 'Show removed' });
    assert.equal(await toggle.getAttribute('aria-checked'), 'false');
    await toggle.focus();
    await page.keyboard.press('Enter');
    await page.waitForURL(/removed=1/);
    assert.equal(await page.getByRole('switch', { name: 'Hide removed' }).getAttribute('aria-checked'), 'true');
    await checkPage(page, 'host');
  });

  test('an enrolment token is created with its secret shown once (not after a reload), listed with its uses, and revoked', async () => {
    await page.goto(`${origin}/console/tokens`);
    await page.getByLabel('Label').fill('rack 7');
    await page.getByLabel('Hosts that may enrol with it').fill('2');
    await page.getByLabel('Tags (key=value, comma-separated)').fill('site=lab, role=web');
    // Enter in a field submits its form, as for a keyboard user.
    await Promise.all([page.waitForEvent('load'), page.getByLabel('Tags (key=value, comma-separated)').press('Enter')]);
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
    const used = await page.locator('tr', { hasText: enrolled.tokenId }).innerText();
    assert.ok(used.includes(enrolled.hostname) && /1 of 1/.test(used), used);
    await tabTo(page, /^Revoke etk_/);
    await submitByEnter(page);
    assert.equal(new URL(page.url()).pathname, '/console/tokens');
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
    // A host installed from it: its agent.toml's token and bundle id, as the agent sends them.
    const agentToml = parseToml((await run('unzip', ['-p', file, `${download.suggestedFilename().replace(/\.zip$/, '')}/agent.toml`])).stdout) as { agent: { org_token: string; install_bundle_id: string } };
    rmSync(file);
    const client = ingestClient(`127.0.0.1:${appliance.grpcPort}`, readFileSync(appliance.caCertPath, 'utf8'));
    const fromBundle = await callRegister(client, signedRegister(newIdentity('from-the-bundle'), agentToml.agent.org_token, { install_bundle_id: agentToml.agent.install_bundle_id }));
    client.close();
    assert.ok(fromBundle.ok, JSON.stringify(fromBundle));
    await page.goto(`${origin}/console/bundles`);
    const row = page.locator('tbody tr', { hasText: agentToml.agent.install_bundle_id });
    assert.match(await row.innerText(), /bnd_[0-9a-f]{20}\s+linux x64/);
    assert.match(await row.innerText(), new RegExp(`1, last from-the-bundle[\\s\\S]*${sha256}`), 'the chain of custody: the bundle, the host installed from it, the fingerprint');
    await row.getByRole('link', { name: 'from-the-bundle' }).click();
    await page.waitForURL(`${origin}/console/hosts/${fromBundle.value.agent_id}`);
    assert.match(await page.locator('#host-summary').innerText(), new RegExp(`Install bundle\\s+${agentToml.agent.install_bundle_id}`));

    // With an existing token: its id and secret (the appliance keeps only the hash); a wrong secret is refused and never shown back.
    const existing = await appliance.createToken('--max-uses', '10');
    const buildWith = async (secret: string) => {
      await page.goto(`${origin}/console/bundles`);
      await page.getByLabel('Ingest address (host:port; several, comma-separated)').fill('ingest.example:9443');
      await page.getByLabel('Token', { exact: true }).selectOption('existing');
      await page.getByLabel('Existing token id').fill(existing.id);
      await page.getByLabel('Its secret (never shown again)').fill(secret);
      await page.getByLabel('Its secret (never shown again)').press('Enter');
      await page.waitForLoadState('load');
    };
    const wrongSecret = `tok_${'A'.repeat(43)}`;
    await buildWith(wrongSecret);
    await page.getByRole('alert').filter({ hasText: 'ERR_BUNDLE_TOKEN_UNUSABLE' }).waitFor();
    assert.ok(!(await page.content()).includes(wrongSecret), 'the secret typed is not shown back');
    await buildWith(existing.token);
    await page.getByRole('link', { name: /^download ct-ops-agent-/ }).waitFor();
    assert.ok(!(await page.content()).includes(existing.token), 'nor the right one');
    await page.goto(`${origin}/console/bundles`);
    assert.match(await page.locator('tbody tr').first().innerText(), new RegExp(`existing\\s+${existing.id}`));
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

  test("delete with \"Also uninstall agent from the remote host\" by keyboard: the agent starts its uninstaller, whose report deletes the host, and the page follows it", async () => {
    await page.goto(`${origin}/console/hosts/${enrolled.id}`);
    await tabTo(page, 'Also uninstall agent from the remote host');
    await page.keyboard.press('Space');
    assert.ok(await page.getByLabel('Also uninstall agent from the remote host').isChecked());
    await tabTo(page, 'Delete host');
    await submitByEnter(page);
    assert.equal(new URL(page.url()).pathname, `/console/hosts/${enrolled.id}`);
    const tasks = page.locator('h2:has-text("Tasks") + table');
    assert.match(await tasks.innerText(), /agent_uninstall\s+\w+\s+admin/, 'the uninstall was asked of the agent, by admin');
    let loads = 0;
    page.on('load', () => (loads += 1));
    if (!ROOT) {
      // Not root and no root helper: the agent says it cannot, and the host stays.
      await waitFor('the uninstall refused by the agent', async () => /agent_uninstall\s+failed\s+admin[\s\S]*ERR_UNINSTALL_UNAVAILABLE/.test(await tasks.innerText()), 60_000);
      return;
    }
    // The agent started the stand-in uninstaller detached; it reports like uninstall.sh, and the host is deleted.
    await waitFor('the uninstall reported and shown', async () => new RegExp(`agent_uninstall\\s+succeeded\\s+admin[\\s\\S]*${STANDIN_REMOVED}`).test(await tasks.innerText()), 60_000);
    await page.locator('#host-summary .status-deleted').waitFor({ timeout: 10_000 });
    assert.equal(loads, 0, 'followed with no reload');
    assert.ok(readFileSync(standInMarker(agent), 'utf8').includes('tsk_'), 'the uninstaller ran on the host');
    await page.goto(`${origin}/console/hosts`);
    assert.equal(await page.locator(`tr[data-host-id="${enrolled.id}"]`).count(), 0, 'gone from the hosts list');
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
    await waitFor('the failed task shown (the page follows its host)', async () => (await page.getByText(message).count()) > 0, 20_000);
    assert.equal(await page.evaluate('window.__xss'), undefined);
    assert.equal(await page.locator('main img, main iframe, main script').count(), 0, 'no element was made from agent or admin text');
    await browser.assertNoCspViolations(page);
    stream.call.end();
    client.close();
  });

  test('reject, and approve as replacement of the machine it was before (a reinstall), by keyboard: the existing host shown side by side', async () => {
    const client = ingestClient(`127.0.0.1:${appliance.grpcPort}`, readFileSync(appliance.caCertPath, 'utf8'));
    const machineId = randomUUID();
    // The machine as it was: enrolled and approved. Then reinstalled: a new key, the same machine id.
    const { token: automatic } = await appliance.createToken('--auto-approve');
    const before = await callRegister(client, signedRegister(newIdentity('rebuilt-box', machineId), automatic));
    assert.ok(before.ok && before.value.status === 'AGENT_STATUS_ACTIVE', JSON.stringify(before));
    const { token } = await appliance.createToken('--max-uses', '2');
    const after = await callRegister(client, signedRegister(newIdentity('rebuilt-box', machineId), token));
    const unwanted = await callRegister(client, signedRegister(newIdentity('unwanted-box'), token));
    assert.ok(after.ok && unwanted.ok, JSON.stringify([after, unwanted]));
    client.close();

    await page.goto(`${origin}/console/pending`);
    const card = page.locator('section.card', { has: page.getByRole('heading', { name: 'rebuilt-box' }) });
    assert.match(await card.getByRole('note').innerText(), new RegExp(`fingerprint of host ${before.value.agent_id} \\(rebuilt-box\\)`));
    assert.equal(await card.getByRole('definition').filter({ hasText: before.value.agent_id }).count(), 1, 'the existing host side by side');
    await checkPage(page, 'pending-replacement');

    await tabTo(page, `Reject`, 200);
    // The first Reject reached may be another card's: go on to the unwanted host's.
    while ((await page.evaluate<string>('document.activeElement.closest("section").id')) !== unwanted.value.agent_id) await tabTo(page, 'Reject', 200);
    await submitByEnter(page);
    await waitFor('the rejection shown', async () => (await page.getByRole('heading', { name: 'unwanted-box' }).count()) === 0, 15_000);
    assert.equal((await appliance.host(unwanted.value.agent_id)).status, 'rejected');

    await page.goto(`${origin}/console/pending`);
    await tabTo(page, `Approve as replacement of ${before.value.agent_id}`, 200);
    await submitByEnter(page);
    await waitFor('the replacement shown', async () => (await page.getByRole('heading', { name: 'rebuilt-box' }).count()) === 0, 15_000);
    const replacement = await appliance.host(after.value.agent_id);
    assert.equal(replacement.approval, 'active');
    assert.equal(replacement.replaces, before.value.agent_id);
    assert.equal((await appliance.host(before.value.agent_id)).status, 'deleted', 'the machine as it was is replaced');
  });

  test('a session that ends while its pages are open: they go to the login page by themselves', async () => {
    const context = await browser.newContext();
    const listed = await context.newPage();
    await logIn(listed, 'admin', ADMIN_PASSWORD);
    await listed.goto(`${origin}/console/hosts`);
    const other = await context.newPage();
    await other.goto(`${origin}/console/`);
    await other.getByRole('button', { name: 'Log out' }).click();
    await other.waitForURL(`${origin}/console/login`);
    // The appliance ends the session's live streams; the list's stream is refused when it comes back.
    await listed.waitForURL(`${origin}/console/login`, { timeout: 20_000 });
    await context.close();
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
    await tabTo(page, 'Pause rollout');
    await submitByEnter(page);
    await page.getByText('Version 9.9.9: paused').waitFor();
    assert.equal((await appliance.cliJson<{ rollout: { state: string } }>('releases', 'status')).rollout.state, 'paused');
    await tabTo(page, 'Resume rollout');
    await submitByEnter(page);
    await page.getByText('Version 9.9.9: running').waitFor();
  });

  test('the overview lists what needs attention: pending hosts and the task an agent reported failed', async () => {
    await page.goto(`${origin}/console/`);
    const attention = page.locator('h2:has-text("Needs attention") + ul');
    const pending = (await appliance.hosts()).filter((host) => host.status === 'pending').length;
    assert.match(await attention.innerText(), new RegExp(`${pending} host\\(s\\) waiting for approval`));
    assert.match(await attention.innerText(), /\(config_reload\) failed[\s\S]*ERR_CONFIG_INVALID/);
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
    const refusals = /Failed to load resource: the server responded with a status of (400|401|403|409|429) /;
    assert.deepEqual(browser.pageErrors.filter((error) => !refusals.test(error)), [], 'no script error, no other failed load');
    assert.ok(browser.requests.length > 20, `${browser.requests.length} requests recorded`);
    assert.deepEqual(appliance.process.events.filter((event) => event.msg === 'console CSP violation reported'), []);
  });
});
