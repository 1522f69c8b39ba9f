import assert from 'node:assert/strict';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

/**
 * A real browser for the console's end-to-end tests: Debian's chromium driven by playwright-core, headless,
 * with nothing that could reach a network other than the appliance's origin. Every request is recorded;
 * anything off the origin is aborted (so it never leaves) and listed. CSP violations, page errors and
 * console errors are collected per page for the assertions below.
 */

export interface BrowserOptions {
  /** The appliance's origin, e.g. `https://127.0.0.1:8443`; the only one requests may go to. */
  origin: string;
  /**
   * PEM of the certificate(s) the server presents (the appliance's server certificate, not its CA):
   * Chromium skips verification of a chain containing a certificate whose SubjectPublicKeyInfo hash is
   * listed in --ignore-certificate-errors-spki-list, and the appliance serves its leaf without the CA.
   * Several certificates may be concatenated. Absent: no certificate is trusted beyond the system's.
   */
  serverCertPem?: string;
  /** Where screenshots go (created if missing). */
  outputDir: string;
}

/** What `securitypolicyviolation` reported, as the init script stores it on `window.__cspViolations`. */
export interface CspViolation {
  violatedDirective: string;
  blockedURI: string;
  sourceFile: string;
  lineNumber: number;
}

export interface BrowserHarness {
  readonly browser: Browser;
  /** The context `newPage()` opens pages in. */
  readonly context: BrowserContext;
  /** Another context (its own cookies: a second user's session), recorded and confined like the first. */
  newContext(): Promise<BrowserContext>;
  newPage(): Promise<Page>;
  /** Every URL any page requested, in order, including the aborted ones. */
  readonly requests: string[];
  /** URLs outside the origin, each aborted before it left the browser. */
  readonly offOrigin: string[];
  /**
   * Uncaught exceptions (`pageerror`) and console errors of every page, as `page URL: text`. Chromium logs
   * every failed load as a console error, so an aborted off-origin request shows here as well.
   */
  readonly pageErrors: string[];
  /** Fails listing every request that went (or tried to go) off the origin. */
  assertOnlyOrigin(): void;
  /** Fails listing every uncaught exception and console error (CSP reports are left to assertNoCspViolations). */
  assertNoPageErrors(): void;
  /**
   * Fails listing the CSP violations of `page`: those its current document's `securitypolicyviolation`
   * listener stored, and the "Refused to …" console messages of every document it showed.
   */
  assertNoCspViolations(page: Page): Promise<void>;
  /** Runs axe-core's WCAG 2 A and AA rules in `page`; fails listing every serious or critical violation. */
  assertAccessible(page: Page, label: string): Promise<void>;
  /** Saves a full-page screenshot as `<outputDir>/<name>.png`; returns its path. */
  screenshot(page: Page, name: string): Promise<string>;
  close(): Promise<void>;
}

/**
 * Flags beyond playwright's own: no sandbox (tests may run as root in a container), no GPU, none of
 * chromium's own traffic (updates, safe browsing, field trials), and a resolver that fails every name but
 * localhost and the origin's host (IP literals go through the rules too), so even a request that escaped
 * the route could not go anywhere. Chromium honours the SPKI list only with --user-data-dir, which
 * playwright always passes (a fresh temporary profile).
 */
function chromiumArgs(originHost: string, spkiHashes: readonly string[]): string[] {
  return [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--no-first-run',
    `--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE ${originHost}`,
    ...(spkiHashes.length > 0 ? [`--ignore-certificate-errors-spki-list=${spkiHashes.join(',')}`] : []),
  ];
}

/** base64 SHA-256 of each certificate's DER SubjectPublicKeyInfo: the form the SPKI flag takes. */
export function spkiHashes(pem: string): string[] {
  const certificates = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  return certificates.map((certificate) => createHash('sha256').update(new X509Certificate(certificate).publicKey.export({ type: 'spki', format: 'der' })).digest('base64'));
}

// The functions below run inside the page. The project compiles without the DOM library (adding it would
// retype Node's globals for every file), so they name the little of the page they use.
declare const window: { axe?: Axe; __cspViolations?: CspViolation[] };
declare const document: { addEventListener(type: 'securitypolicyviolation', listener: (event: CspViolation) => void): void };

interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: unknown[] }[];
}

interface Axe {
  run(context: typeof document, options: { runOnly: string[] }): Promise<{ violations: AxeViolation[] }>;
}

/**
 * Runs in every document before its own scripts (injected through the DevTools protocol, so the page's
 * CSP does not apply to it). The array lives as long as the document; console messages outlast it.
 */
function recordCspViolations(): void {
  const violations: CspViolation[] = [];
  Object.defineProperty(window, '__cspViolations', { value: violations });
  document.addEventListener('securitypolicyviolation', (event) => {
    violations.push({ violatedDirective: event.violatedDirective, blockedURI: event.blockedURI, sourceFile: event.sourceFile, lineNumber: event.lineNumber });
  });
}

const CSP_CONSOLE = /Content Security Policy|Refused to/;

/** axe-core's browser build, read once; injected by page.evaluate, which (unlike a script tag) the page's CSP cannot refuse. */
let axeSource: string | undefined;
function readAxeSource(): string {
  axeSource ??= readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  return axeSource;
}

export async function launchBrowser(options: BrowserOptions): Promise<BrowserHarness> {
  const origin = new URL(options.origin).origin;
  mkdirSync(options.outputDir, { recursive: true });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: chromiumArgs(new URL(origin).hostname, options.serverCertPem === undefined ? [] : spkiHashes(options.serverCertPem)),
  });
  const requests: string[] = [];
  const offOrigin: string[] = [];
  const pageErrors: string[] = [];
  const cspConsole = new Map<Page, string[]>();

  function watch(page: Page): void {
    cspConsole.set(page, []);
    page.on('pageerror', (error) => pageErrors.push(`${page.url()}: ${error.stack ?? error.message}`));
    page.on('console', (message) => {
      if (CSP_CONSOLE.test(message.text())) cspConsole.get(page)!.push(`${page.url()}: ${message.text()}`);
      else if (message.type() === 'error') pageErrors.push(`${page.url()}: console.error: ${message.text()} (${message.location().url})`);
    });
  }

  async function newContext(): Promise<BrowserContext> {
    // A service worker's fetches would bypass the route below; the console has none to lose.
    const context = await browser.newContext({ serviceWorkers: 'block' });
    await context.addInitScript(recordCspViolations);
    context.on('page', watch);
    await context.route('**/*', async (route) => {
      const url = route.request().url();
      requests.push(url);
      // A route settled while its page closes rejects; the test is over for that page, so nothing is lost.
      if (new URL(url).origin === origin) return route.continue().catch(() => undefined);
      offOrigin.push(url);
      return route.abort('blockedbyclient').catch(() => undefined);
    });
    return context;
  }

  const context = await newContext();
  return {
    browser,
    context,
    newContext,
    newPage: () => context.newPage(),
    requests,
    offOrigin,
    pageErrors,
    assertOnlyOrigin() {
      if (offOrigin.length > 0) assert.fail(`requests outside ${origin} (aborted):\n  ${offOrigin.join('\n  ')}`);
    },
    assertNoPageErrors() {
      if (pageErrors.length > 0) assert.fail(`page errors:\n  ${pageErrors.join('\n  ')}`);
    },
    async assertNoCspViolations(page) {
      const reported = await page.evaluate(() => window.__cspViolations ?? []);
      const lines = [...reported.map((v) => `${v.violatedDirective} blocked ${v.blockedURI} at ${v.sourceFile}:${v.lineNumber}`), ...(cspConsole.get(page) ?? [])];
      if (lines.length > 0) assert.fail(`CSP violations on ${page.url()}:\n  ${lines.join('\n  ')}`);
    },
    async assertAccessible(page, label) {
      if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(readAxeSource());
      const violations = await page.evaluate(async () => {
        const result = await window.axe!.run(document, { runOnly: ['wcag2a', 'wcag2aa'] });
        return result.violations.map(({ id, impact, help, nodes }) => ({ id, impact, help, nodes: nodes.map(({ target }) => ({ target })) }));
      });
      const blocking = violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      if (blocking.length > 0) {
        const lines = blocking.map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((node) => JSON.stringify(node.target)).join(' ')}`);
        assert.fail(`accessibility violations on ${label}:\n  ${lines.join('\n  ')}`);
      }
    },
    async screenshot(page, name) {
      const path = join(options.outputDir, `${name}.png`);
      await page.screenshot({ path, fullPage: true });
      return path;
    },
    close: () => browser.close(),
  };
}
