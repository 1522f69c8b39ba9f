/**
 * Console sessions over real HTTPS against a real appliance whose wall clock the test moves
 * (libfaketime): the idle timeout (30 min) and the absolute one (12 h) end a session, the page's own
 * live refreshes do not keep it alive, the live stream is capped per session, and the cookies carry
 * __Host-, HttpOnly, Secure, SameSite=Strict; in chromium, an open page whose session went idle
 * leaves for the login page by itself. Assets are served from the appliance with an
 * immutable cache; pages are never cached. No console source sets raw HTML.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import type { IncomingHttpHeaders } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defuseFormula } from '../appliance/console/plugin.tsx';
import { launchBrowser } from './helpers/browser.ts';
import { ClockedAppliance } from './helpers/faketime.ts';
import { waitFor } from './helpers/wait.ts';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

let clocked: ClockedAppliance;

before(async () => {
  clocked = await ClockedAppliance.start();
});
after(async () => {
  await clocked?.dispose();
});

/** A browser's cookie jar for one origin, as far as these tests need it. */
class Browser {
  readonly cookies = new Map<string, string>();

  async call(method: string, path: string, options: { form?: Record<string, string>; headers?: Record<string, string>; stream?: boolean; body?: string } = {}): Promise<Answer> {
    const body = options.body ?? (options.form && new URLSearchParams(options.form).toString());
    return new Promise((resolve, reject) => {
      const sent = request(
        {
          host: '127.0.0.1',
          port: clocked.appliance.httpPort,
          method,
          path,
          ca: clocked.appliance.caCert,
          servername: 'localhost',
          headers: {
            cookie: [...this.cookies].map(([name, value]) => `${name}=${value}`).join('; '),
            ...(options.form !== undefined && { 'content-type': 'application/x-www-form-urlencoded' }),
            ...options.headers,
          },
        },
        (response) => {
          for (const line of response.headers['set-cookie'] ?? []) {
            const [pair] = line.split(';');
            const [name, value] = pair!.split('=');
            if (/max-age=0|expires=thu, 01 jan 1970/i.test(line)) this.cookies.delete(name!);
            else this.cookies.set(name!, value ?? '');
          }
          // A live stream never ends: its head is the answer.
          if (options.stream) {
            resolve({ status: response.statusCode ?? 0, headers: response.headers, text: '' });
            return;
          }
          let text = '';
          response.setEncoding('utf8');
          response.on('data', (chunk: string) => (text += chunk));
          response.on('end', () => resolve({ status: response.statusCode ?? 0, headers: response.headers, text }));
        },
      );
      sent.on('error', reject);
      sent.end(body);
    });
  }

  /** The CSRF token a page carries (its body's hx-headers). */
  static csrfOf(page: Answer): string {
    const match = /hx-headers="([^"]+)"/.exec(page.text);
    assert.ok(match, 'the page carries its CSRF token');
    return (JSON.parse(match[1]!.replaceAll('&quot;', '"')) as Record<string, string>)['x-csrf-token']!;
  }

  async logIn(username: string, password: string): Promise<Answer> {
    const page = await this.call('GET', '/console/login');
    return this.call('POST', '/console/login', { form: { username, password, _csrf: Browser.csrfOf(page) } });
  }
}

const PASSWORD = 'a passphrase for the clock tests';

describe('console sessions', () => {
  const admin = new Browser();

  test('login sets __Host- cookies: HttpOnly, Secure, SameSite=Strict; the one-time password is changed first', async () => {
    const oneTime = /password: (\S+)/.exec(clocked.appliance.process.stderr)?.[1];
    assert.ok(oneTime);
    const loggedIn = await admin.logIn('admin', oneTime);
    assert.equal(loggedIn.status, 303);
    assert.equal(loggedIn.headers.location, '/console/password');
    const cookie = loggedIn.headers['set-cookie']!.find((line) => line.startsWith('__Host-ctops_session='));
    assert.ok(cookie, JSON.stringify(loggedIn.headers['set-cookie']));
    for (const attribute of ['Path=/', 'HttpOnly', 'Secure', 'SameSite=Strict']) assert.ok(cookie.includes(attribute), `${attribute} in ${cookie}`);
    assert.doesNotMatch(cookie, /Domain=/i);
    const form = await admin.call('GET', '/console/password');
    const changed = await admin.call('POST', '/console/password', { form: { current_password: oneTime, new_password: PASSWORD, _csrf: Browser.csrfOf(form) } });
    assert.equal(changed.status, 303);
    assert.equal(changed.headers.location, '/console/');
    assert.equal((await admin.call('GET', '/console/')).status, 200);
  });

  test('30 minutes idle end the session; live refreshes (x-console-background) do not count as use', async () => {
    clocked.setClock('+20m');
    assert.equal((await admin.call('GET', '/console/?fragment=overview', { headers: { 'x-console-background': '1' } })).status, 200, 'a refresh within the idle time works');
    clocked.setClock('+31m');
    const idle = await admin.call('GET', '/console/hosts');
    assert.equal(idle.status, 303, 'idle since +0, whatever the page refreshed');
    assert.equal(idle.headers.location, '/console/login');
    const fragment = await admin.call('GET', '/console/?fragment=overview', { headers: { 'hx-request': 'true' } });
    assert.equal(fragment.status, 401, 'an htmx request is told to go to the login page');
    assert.equal(fragment.headers['hx-redirect'], '/console/login');
  });

  test('use keeps a session alive, but not past 12 hours', async () => {
    clocked.setClock('+0');
    assert.equal((await admin.logIn('admin', PASSWORD)).status, 303);
    for (const offset of ['+25m', '+50m', '+75m']) {
      clocked.setClock(offset);
      assert.equal((await admin.call('GET', '/console/')).status, 200, `used at ${offset}`);
    }
    clocked.setClock('+721m');
    assert.equal((await admin.call('GET', '/console/')).status, 303, 'the absolute lifetime ended it');
    clocked.setClock('+0');
  });

  test('in a real browser: an open page whose session went idle too long leaves for the login page by itself', async () => {
    clocked.setClock('+0');
    const origin = `https://127.0.0.1:${clocked.appliance.httpPort}`;
    const browser = await launchBrowser({ origin, serverCertPem: readFileSync(join(clocked.appliance.dataDir, 'server.crt'), 'utf8'), outputDir: join(import.meta.dirname, '..', 'test-output', 'console-session') });
    try {
      const page = await browser.newPage();
      await page.goto(`${origin}/console/login`);
      await page.getByLabel('Username').fill('admin');
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Log in' }).click();
      await page.waitForURL(`${origin}/console/`);
      await page.goto(`${origin}/console/hosts`);
      await page.getByRole('heading', { name: 'Hosts' }).waitFor();
      // Nothing happens in the fleet: no refresh would notice. The appliance ends the idle session's
      // stream (checked every 10 s); the page's reconnect is refused and it asks whether its session is gone.
      clocked.setClock('+31m');
      await page.waitForURL(`${origin}/console/login`, { timeout: 30_000 });
      browser.assertOnlyOrigin();
    } finally {
      await browser.close();
      clocked.setClock('+0');
    }
  });

  test('live streams: text/event-stream, never cached, at most 8 per session (ERR_CONSOLE_BUSY)', async () => {
    assert.equal((await admin.logIn('admin', PASSWORD)).status, 303);
    const streams: Answer[] = [];
    for (let index = 0; index < 8; index += 1) streams.push(await admin.call('GET', '/console/events', { stream: true }));
    for (const stream of streams) {
      assert.equal(stream.status, 200);
      assert.equal(stream.headers['content-type'], 'text/event-stream; charset=utf-8');
      assert.equal(stream.headers['cache-control'], 'no-store');
    }
    const ninth = await admin.call('GET', '/console/events');
    assert.equal(ninth.status, 503);
    assert.match(ninth.text, /ERR_CONSOLE_BUSY/);
    // A host page's stream names its host by id; anything else is refused before a stream opens.
    const malformed = await admin.call('GET', '/console/events?host=hst_..%2Fx');
    assert.equal(malformed.status, 400);
    assert.match(malformed.text, /ERR_INVALID_ARGUMENT/);
  });

  test('assets are served by the appliance with an immutable cache; pages carry the console CSP and are not cached', async () => {
    const login = await admin.call('GET', '/console/login');
    const csp = String(login.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'; script-src 'self'; style-src 'self'/);
    assert.doesNotMatch(csp, /unsafe-/);
    assert.equal(login.headers['cache-control'], 'no-store');
    const assets = [...login.text.matchAll(/(?:src|href)="(\/console\/assets\/[^"]+)"/g)].map((match) => match[1]!);
    assert.equal(assets.length, 2, 'one script, one stylesheet');
    for (const asset of assets) {
      const served = await admin.call('GET', asset);
      assert.equal(served.status, 200);
      assert.equal(served.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.match(String(served.headers['content-type']), /^text\/(javascript|css)/);
    }
    assert.equal((await admin.call('GET', '/console/assets/missing-ABC.js')).status, 404);
    assert.equal((await admin.call('GET', '/console/assets/..%2Fmanifest.json')).status, 400, 'only asset names');
  });
});

test('a CSP violation report is taken without a session or CSRF token, logged, and limited per source', async () => {
  const browser = new Browser();
  const report = JSON.stringify({ 'csp-report': { 'document-uri': 'https://appliance/console/', 'violated-directive': 'script-src-elem', 'blocked-uri': 'inline' } });
  const answers: number[] = [];
  for (let index = 0; index < 12; index += 1) answers.push((await browser.call('POST', '/console/csp-report', { headers: { 'content-type': 'application/csp-report' }, body: report })).status);
  assert.deepEqual([...new Set(answers)], [204]);
  const logged = () => clocked.appliance.process.events.filter((event) => event.msg === 'console CSP violation reported');
  await waitFor('the reports logged', () => logged().length >= 10);
  assert.equal(logged().length, 10, 'at most 10 a minute from one source');
  assert.equal((await browser.call('POST', '/console/csp-report', { headers: { 'content-type': 'application/csp-report' }, body: 'x'.repeat(20_000) })).status, 413);
});

test('no console source renders raw HTML (dangerouslySetInnerHTML) or inline script/style', () => {
  const dir = join(import.meta.dirname, '..', 'appliance', 'console');
  const files = readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((name) => /\.tsx?$/.test(name));
  assert.ok(files.length >= 5);
  for (const file of files) {
    const source = readFileSync(join(dir, file), 'utf8');
    assert.doesNotMatch(source, /dangerouslySetInnerHTML|<style|style=\{|on[A-Z][a-z]+=\{/, file);
  }
});

test('CSV export: a cell a spreadsheet would run as a formula is defused; others are left alone', () => {
  for (const formula of ['=HYPERLINK("http://x")', '+1', '-2+3', '@SUM(A1)', '\tcmd', '\rcmd']) assert.equal(defuseFormula(formula), `'${formula}`);
  for (const plain of ['bash', '1:2.3-4', "it's", '']) assert.equal(defuseFormula(plain), plain);
});
