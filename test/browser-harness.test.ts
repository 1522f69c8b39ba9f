import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureTlsMaterial, type TlsMaterial } from '../appliance/pki/certificates.ts';
import { launchBrowser, type BrowserHarness } from './helpers/browser.ts';
import { waitFor } from './helpers/wait.ts';

// Page code in the tests below; the project compiles without the DOM library.
declare const document: { body: { dataset: Record<string, string | undefined> } };
declare const window: { __cspViolations?: unknown[]; axe?: unknown };

// The appliance's policy shape: nothing inline, everything from the origin.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'";

function html(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body><main>${body}</main></body></html>`;
}

const PAGES: Record<string, { type: string; body: string; csp?: string }> = {
  '/clean': { type: 'text/html', body: html('Clean', '<h1>Hosts</h1><form><label for="q">Search</label><input id="q" name="q"><button>Go</button></form><script type="module" src="/module.js"></script>') },
  '/module.js': { type: 'text/javascript', body: "document.body.dataset.module = 'ran';" },
  '/inline-script': {
    type: 'text/html',
    body: html('Inline', '<h1>Inline</h1><script type="module" src="/module.js"></script><script>document.body.dataset.inline = "ran";</script>'),
  },
  '/off-origin': {
    type: 'text/html',
    body: html('Off origin', '<h1>Off origin</h1><img src="https://example.com/x.png" alt="external">'),
    // The policy lets the image through, so what stops it is the harness's route, not the CSP.
    csp: "default-src 'none'; img-src 'self' https://example.com",
  },
  '/inaccessible': { type: 'text/html', body: html('Defects', '<h1>Defects</h1><img src="/pixel.svg"><form><input name="unlabelled"></form>') },
  '/pixel.svg': { type: 'image/svg+xml', body: '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>' },
  '/errors': { type: 'text/html', body: html('Errors', '<h1>Errors</h1><script type="module" src="/throws.js"></script>') },
  '/throws.js': { type: 'text/javascript', body: "console.error('console said no'); throw new Error('module blew up');" },
};

describe('the real-browser harness', () => {
  let dir: string;
  let tls: TlsMaterial;
  let server: Server;
  let origin: string;
  const open: BrowserHarness[] = [];

  /** A fresh browser per test, so each test's records are its own. */
  async function browser(trust = true): Promise<BrowserHarness> {
    const harness = await launchBrowser({ origin, outputDir: join(dir, 'screenshots'), ...(trust ? { serverCertPem: tls.serverCertPem } : {}) });
    open.push(harness);
    return harness;
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ct-ops-browser-harness-'));
    // The appliance's own CA and server certificate, as it issues them for itself.
    tls = await ensureTlsMaterial(dir, ['127.0.0.1'], new Date());
    server = createServer({ key: tls.serverKeyPem, cert: tls.serverCertPem }, (req, res) => {
      const page = PAGES[new URL(req.url ?? '/', 'https://x').pathname];
      if (!page) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': page.type, 'content-security-policy': page.csp ?? CSP }).end(page.body);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await Promise.all(open.map((harness) => harness.close()));
    server?.close();
    server?.closeAllConnections();
    rmSync(dir, { recursive: true, force: true });
  });

  test('a clean page loads over HTTPS trusted by its certificate key alone and passes every check', async () => {
    const harness = await browser();
    const page = await harness.newPage();
    const response = await page.goto(`${origin}/clean`);
    assert.equal(response?.status(), 200);
    assert.match((await response!.securityDetails())?.protocol ?? '', /^TLS/);
    await page.waitForFunction(() => document.body.dataset.module === 'ran');
    harness.assertOnlyOrigin();
    harness.assertNoPageErrors();
    await harness.assertNoCspViolations(page);
    await harness.assertAccessible(page, 'clean page');
    const png = await harness.screenshot(page, 'clean');
    assert.equal(png, join(dir, 'screenshots', 'clean.png'));
    assert.deepEqual([...readFileSync(png).subarray(1, 4)], [...Buffer.from('PNG')]);
    assert.deepEqual(harness.requests, [`${origin}/clean`, `${origin}/module.js`]);
  });

  test('without the certificate key the same page fails verification, so the trust comes from the SPKI flag', async () => {
    const harness = await browser(false);
    const page = await harness.newPage();
    await assert.rejects(page.goto(`${origin}/clean`), /ERR_CERT_AUTHORITY_INVALID/);
  });

  test("an inline script under script-src 'self' is blocked and reported while the same-origin module runs", async () => {
    const harness = await browser();
    const page = await harness.newPage();
    await page.goto(`${origin}/inline-script`);
    await page.waitForFunction(() => document.body.dataset.module === 'ran');
    assert.equal(await page.evaluate(() => document.body.dataset.inline), undefined, 'the inline script did not run');
    const violations = await page.evaluate(() => window.__cspViolations);
    assert.deepEqual(violations, [{ violatedDirective: 'script-src-elem', blockedURI: 'inline', sourceFile: `${origin}/inline-script`, lineNumber: 1 }]);
    await assert.rejects(harness.assertNoCspViolations(page), (error: Error) => {
      assert.match(error.message, /script-src-elem blocked inline at https:\/\/127\.0\.0\.1:\d+\/inline-script:1/);
      assert.match(error.message, /inline-script: Executing inline script violates the following Content Security Policy directive 'script-src 'self''/);
      return true;
    });
    harness.assertNoPageErrors();
    harness.assertOnlyOrigin();
  });

  test('a request off the origin is aborted in the browser and reported', async () => {
    const harness = await browser();
    const page = await harness.newPage();
    const failed = page.waitForEvent('requestfailed');
    await page.goto(`${origin}/off-origin`);
    const request = await failed;
    assert.equal(request.url(), 'https://example.com/x.png');
    assert.match(request.failure()?.errorText ?? '', /^net::ERR_BLOCKED_BY_CLIENT/, 'aborted by the route, not by DNS');
    assert.deepEqual(harness.offOrigin, ['https://example.com/x.png']);
    assert.deepEqual(harness.requests, [`${origin}/off-origin`, 'https://example.com/x.png']);
    assert.throws(() => harness.assertOnlyOrigin(), /requests outside https:\/\/127\.0\.0\.1:\d+ \(aborted\):\n {2}https:\/\/example\.com\/x\.png/);
    await harness.assertNoCspViolations(page);
    // Chromium logs the aborted load as a console error too, so a page that tries to leave also fails assertNoPageErrors.
    assert.deepEqual(harness.pageErrors, [`${origin}/off-origin: console.error: Failed to load resource: net::ERR_BLOCKED_BY_CLIENT.Inspector (https://example.com/x.png)`]);
  });

  test("a second context, another user's session, is recorded and confined like the first", async () => {
    const harness = await browser();
    const second = await harness.newContext();
    assert.notEqual(second, harness.context);
    const page = await second.newPage();
    await page.goto(`${origin}/off-origin`);
    await waitFor('the aborted image', () => harness.offOrigin.length === 1);
    assert.deepEqual(harness.offOrigin, ['https://example.com/x.png']);
    await harness.assertAccessible(page, 'page of the second context');
  });

  test('axe flags an image without alt text and an input without a label, naming rule, impact and target', async () => {
    const harness = await browser();
    const page = await harness.newPage();
    await page.goto(`${origin}/inaccessible`);
    await assert.rejects(harness.assertAccessible(page, 'defects page'), (error: Error) => {
      assert.match(error.message, /^accessibility violations on defects page:/);
      assert.match(error.message, /image-alt \(critical\): .*\["img"\]/);
      assert.match(error.message, /label \(critical\): .*\["input"\]/);
      return true;
    });
    await harness.assertNoCspViolations(page);
  });

  test("axe injected by page.evaluate runs under script-src 'self', where a script tag would be refused", async () => {
    const harness = await browser();
    const page = await harness.newPage();
    await page.goto(`${origin}/clean`);
    await assert.rejects(page.addScriptTag({ content: 'window.__tagRan = true;' }), /violates the following Content Security Policy directive 'script-src 'self''/);
    assert.equal(await page.evaluate(() => '__tagRan' in window), false, 'the CSP refused the script tag');
    await assert.rejects(harness.assertNoCspViolations(page), /script-src-elem blocked inline/);
    await harness.assertAccessible(page, 'clean page under CSP');
    assert.equal(await page.evaluate(() => typeof window.axe), 'object');
  });

  test('uncaught exceptions and console errors are reported as page errors', async () => {
    const harness = await browser();
    const page = await harness.newPage();
    await page.goto(`${origin}/errors`);
    await waitFor('both errors', () => harness.pageErrors.length >= 2);
    assert.throws(() => harness.assertNoPageErrors(), (error: Error) => {
      assert.match(error.message, /console\.error: console said no/);
      assert.match(error.message, /module blew up/);
      return true;
    });
  });
});
