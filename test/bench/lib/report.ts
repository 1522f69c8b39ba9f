import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import type { Machine } from './machine.ts';
import type { Distribution } from '../../../loadtest/lib/stats.ts';

export interface BenchResults {
  command: string;
  machine: Machine;
  agents: number;
  registerConcurrency: number;
  durationSecs: number;
  intervalSecs: number;
  registration: { active: number; errors: number; perSec: number; latencyMs: Distribution; applianceCpuPercent: number };
  connect: { seconds: number; applianceOpenFiles: number };
  heartbeats: { sent: number; acked: number; lost: number; errors: number; perSec: number; rttMs: Distribution };
  appliance: { peakRssMiB: number; cpuSeconds: number; steadyCpuPercent: number };
  loadGenerator: { steadyCpuPercent: number; eventLoopDelayP99Ms: number; eventLoopDelayMaxMs: number };
  otherProcessesCpuPercent: number;
  targetP99Ms: number;
}

/** Met when the p99 round trip is under target and every heartbeat was acknowledged. */
export function targetMet(results: BenchResults): boolean {
  const { heartbeats } = results;
  return heartbeats.rttMs.p99 < results.targetP99Ms && heartbeats.errors === 0 && heartbeats.lost === 0;
}

/** Above this much CPU used by others (% of one core) the figures say more about them than the appliance. */
const BUSY_MACHINE_PERCENT = 50;

function verdict(results: BenchResults): string {
  const outcome = targetMet(results) ? 'MET' : 'NOT MET';
  const other = results.otherProcessesCpuPercent;
  return other > BUSY_MACHINE_PERCENT ? `${outcome} (unreliable: other processes used ${other.toFixed(0)} % of a core; rerun on a quiet machine)` : outcome;
}

const ms = (value: number): string => `${value.toFixed(1)} ms`;
const pct = (value: number): string => `${value.toFixed(0)} %`;

function rows(results: BenchResults): Array<[string, string]> {
  const { registration: reg, connect, heartbeats: hb, appliance, loadGenerator: gen } = results;
  return [
    ['registrations (active / errors)', `${reg.active} / ${reg.errors}`],
    ['registrations/s', reg.perSec.toFixed(0)],
    ['register latency p50 / p99 / max', `${ms(reg.latencyMs.p50)} / ${ms(reg.latencyMs.p99)} / ${ms(reg.latencyMs.max)}`],
    ['appliance CPU while registering', `${pct(reg.applianceCpuPercent)} of one core`],
    ['connect + open streams', `${connect.seconds.toFixed(1)} s for ${results.agents} TLS connections`],
    ['appliance open files while streaming', String(connect.applianceOpenFiles)],
    ['heartbeats sent / acked / lost / errors', `${hb.sent} / ${hb.acked} / ${hb.lost} / ${hb.errors}`],
    ['heartbeats/s sustained', hb.perSec.toFixed(1)],
    ['heartbeat RTT p50 / p95 / p99 / max', `${ms(hb.rttMs.p50)} / ${ms(hb.rttMs.p95)} / ${ms(hb.rttMs.p99)} / ${ms(hb.rttMs.max)}`],
    ['appliance peak RSS (VmHWM)', `${appliance.peakRssMiB.toFixed(0)} MiB`],
    ['appliance CPU time, whole run', `${appliance.cpuSeconds.toFixed(1)} s`],
    ['appliance CPU while heartbeating', `${pct(appliance.steadyCpuPercent)} of one core`],
    ['load generator CPU while heartbeating', `${pct(gen.steadyCpuPercent)} of one core`],
    ['load generator event-loop delay p99 / max', `${ms(gen.eventLoopDelayP99Ms)} / ${ms(gen.eventLoopDelayMaxMs)}`],
    ['other processes CPU while heartbeating', `${pct(results.otherProcessesCpuPercent)} of one core`],
    [`target: heartbeat p99 < ${results.targetP99Ms} ms, none lost`, verdict(results)],
  ];
}

export function textTable(results: BenchResults): string {
  const table = rows(results);
  const width = Math.max(...table.map(([label]) => label.length));
  return table.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}

const SECTION_START = '<!-- bench:core:start (written by test/bench/core.ts; edits inside are replaced) -->';
const SECTION_END = '<!-- bench:core:end -->';

function markdownSection(results: BenchResults): string {
  const { machine } = results;
  return [
    SECTION_START,
    '## Core: registration and heartbeat load (`npm run bench:core`)',
    '',
    `Command: \`${results.command}\``,
    '',
    `- Date: ${machine.date}`,
    `- Machine: ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB RAM, Linux ${machine.kernel}, Node ${machine.node}`,
    `- Load: ${results.agents} distinct Ed25519 agents register with ${results.registerConcurrency} in flight; then each, on its own TLS connection, heartbeats every ${results.intervalSecs} s (starts staggered over one interval) for ${results.durationSecs} s. Appliance and load generator are separate processes on loopback.`,
    '',
    '| Measure | Result |',
    '| --- | --- |',
    ...rows(results).map(([label, value]) => `| ${label} | ${value} |`),
    SECTION_END,
  ].join('\n');
}

/** Replaces the generated section of docs/BENCHMARKS.md, keeping everything around it. */
export function writeBenchmarksSection(path: string, results: BenchResults): void {
  const section = markdownSection(results);
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '# Benchmarks\n';
  const start = current.indexOf(SECTION_START);
  const end = current.indexOf(SECTION_END);
  const updated = start >= 0 && end > start ? current.slice(0, start) + section + current.slice(end + SECTION_END.length) : `${current.trimEnd()}\n\n${section}\n`;
  writeFileSync(path, updated);
}
