/**
 * The host page's vitals chart (uPlot: canvas, styles set through CSSOM, which the console's CSP
 * allows; no inline markup). Loaded only on pages that have a chart. The data comes from the page's
 * `data-vitals` URL as columns: at (ms), cpu, memory, disk (percent or null).
 */
import uPlot from 'uplot';

/** The window the appliance answers (appliance/console/plugin.tsx VITALS_WINDOW_MS). */
const WINDOW_SECS = 24 * 3600;

interface VitalsSeries {
  at: number[];
  cpu: Array<number | null>;
  memory: Array<number | null>;
  disk: Array<number | null>;
}

/** Draws the chart into `element`; a failed fetch leaves the table below it as the only view. */
export async function drawVitals(element: HTMLElement): Promise<void> {
  const answer = await fetch(element.dataset.vitals ?? '', { credentials: 'same-origin', headers: { 'x-console-background': '1' } });
  if (!answer.ok) return;
  const series = (await answer.json()) as VitalsSeries;
  element.replaceChildren();
  if (series.at.length === 0) {
    element.textContent = 'No vitals in the last 24 hours.';
    return;
  }
  const width = Math.max(320, element.clientWidth || 800);
  new uPlot(
    {
      width,
      height: 240,
      // The whole window, however few samples there are (uPlot would otherwise stretch one point over years).
      scales: { x: { time: true, range: (): uPlot.Range.MinMax => [Date.now() / 1000 - WINDOW_SECS, Date.now() / 1000] }, y: { range: [0, 100] } },
      axes: [{}, { label: '%' }],
      series: [
        {},
        { label: 'CPU', stroke: '#0b5cad', width: 2 },
        { label: 'Memory', stroke: '#8a4b00', width: 2 },
        { label: 'Disk', stroke: '#116329', width: 2 },
      ],
    },
    [series.at.map((ms) => ms / 1000), series.cpu, series.memory, series.disk],
    element,
  );
  element.dataset.drawn = String(series.at.length);
  // How many times it was drawn: once at load, again at each change of its host the page is told of.
  element.dataset.draws = String(Number(element.dataset.draws ?? 0) + 1);
}
