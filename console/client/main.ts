/**
 * The console's one script (built by scripts/console-assets.mjs, loaded as a module from the
 * appliance's own origin): htmx for progressive enhancement, configured before it initialises at
 * DOMContentLoaded, and the live-update stream. Pages work without it: every action is a form.
 */
import htmx from 'htmx.org';

// No <style> injected (CSP style-src 'self'), no eval or script in swapped content, no page
// snapshots in sessionStorage (they would keep secrets such as a token shown once), and requests to
// this origin only.
htmx.config.includeIndicatorStyles = false;
htmx.config.allowEval = false;
htmx.config.allowScriptTags = false;
htmx.config.historyCacheSize = 0;
htmx.config.selfRequestsOnly = true;
// Refusals (403 forbidden or CSRF, 409 state conflict, 422, 429 locked) come as fragments to show in place.
htmx.config.responseHandling = [
  { code: '204', swap: false },
  { code: '[23]..', swap: true },
  { code: '(401)', swap: false, error: true },
  { code: '[45]..', swap: true, error: true },
];

/**
 * Live updates: the appliance sends an event on /console/events when the fleet changed (a host
 * enrolled, was decided, connected or went away), and on a host page (`data-live-host`) when that host
 * changed (a heartbeat, a task's step, a scan); every element with `hx-trigger="fleet-changed from:body"`
 * or `host-changed` then fetches its fragment again, and the chart is drawn again. The stream carries
 * no data of its own. EventSource reconnects by itself after a dropped stream; when the appliance
 * refuses it (the session ended or expired) the page is loaded again, which leads to the login page.
 */
function followFleet(): void {
  if (!document.body.hasAttribute('data-live')) return;
  const hostId = document.querySelector<HTMLElement>('[data-live-host]')?.dataset.liveHost;
  const events = new EventSource(hostId ? `/console/events?host=${encodeURIComponent(hostId)}` : '/console/events');
  events.addEventListener('fleet', () => htmx.trigger(document.body, 'fleet-changed', {}));
  events.addEventListener('host', () => {
    htmx.trigger(document.body, 'host-changed', {});
    drawCharts();
  });
  events.addEventListener('error', () => {
    if (events.readyState === EventSource.CLOSED) reloadWithoutSession();
  });
}

/**
 * Loads the page again if the session is gone (ended or expired), which leads to the login page; a
 * stream refused for another reason (too many console tabs) leaves the page as it is.
 */
function reloadWithoutSession(): void {
  void fetch(window.location.href, { method: 'HEAD', headers: { 'x-console-background': '1' }, redirect: 'manual' }).then((answer) => {
    if (answer.status === 401 || answer.type === 'opaqueredirect') window.location.reload();
  });
}

// Buttons that copy a value shown once (a token's secret) to the clipboard; the value stays selectable without it.
document.addEventListener('click', (event) => {
  const button = (event.target as Element | null)?.closest<HTMLButtonElement>('button[data-copy]');
  if (!button) return;
  const source = document.getElementById(button.dataset.copy ?? '');
  if (source?.textContent) void navigator.clipboard.writeText(source.textContent.trim()).then(() => (button.textContent = 'Copied'));
});

/** Charts load their code (uPlot) only on a page that has one. */
function drawCharts(): void {
  const charts = document.querySelectorAll<HTMLElement>('[data-vitals]');
  if (charts.length === 0) return;
  void import('./charts.ts').then(({ drawVitals }) => charts.forEach((element) => void drawVitals(element)));
}

function start(): void {
  followFleet();
  drawCharts();
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
else start();
