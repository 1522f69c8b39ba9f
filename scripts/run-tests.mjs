// Runs the test files in two lanes at once: the image lane (test/image-*.test.ts: builds the
// appliance image, compiles and packs hundreds of MB, boots containers; and the store files that
// run on their own private PostgreSQL cluster: test/store-*.test.ts, test/*postgres*.test.ts, test/*instance*.test.ts; and
// agent-update-nspawn, a container of its own that mostly waits; agent-staged-rollout and agent-executables,
// which build their own releases into their own folders: all three moved out of the longer main lane) and the
// main lane (every other file). Each lane runs its files one at a time, as the whole suite did before, so files
// within a lane never share ports, data directories or containers; the lanes share nothing but the
// build outputs they only read (dist/, made by `npm run build` first). The image lane is mostly
// CPU-bound packing while the main lane mostly waits on its processes, so the two overlap well on
// two cores (docs/decisions.md, "Two test lanes").
//
// The main lane's TAP stream goes to stdout as it runs; the image lane's is kept in a file and
// printed after, so the two never interleave. Exit code: 0 when both lanes pass, else 1.
// Usage: node scripts/run-tests.mjs [file …]  (default: test/*.test.ts)
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// The store files share nothing with the main lane either (temp files, a cluster on a free port each):
// they only shorten it. So do the fuzz files: one appliance each, bounded runs with a fixed seed, no timing bounds.
// fault-slow-readers drives 10,000 agents for about five minutes: here it overlaps the main lane's short files, never
// its other load (fault-kill-under-load, appliance-peer-limits), and its only timing bound is a generous RTT p99.
const IMAGE_LANE = /^(image-.*|store-.*|.*postgres.*|.*instance.*|fuzz-.*|fault-slow-readers|agent-update-nspawn|agent-staged-rollout|agent-executables)\.test\.ts$/;

const files = process.argv.length > 2 ? process.argv.slice(2) : readdirSync(join(root, 'test')).filter((name) => name.endsWith('.test.ts')).sort().map((name) => join('test', name));
const lanes = [
  { name: 'main', files: files.filter((file) => !IMAGE_LANE.test(basename(file))) },
  { name: 'image', files: files.filter((file) => IMAGE_LANE.test(basename(file))) },
].filter((lane) => lane.files.length > 0);

const logDir = mkdtempSync(join(tmpdir(), 'ct-ops-test-lanes-'));

/** Runs one lane with node's test runner; resolves to its exit code. The first lane writes to stdout. */
function runLane(lane, index) {
  const started = Date.now();
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...lane.files], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
  lane.log = join(logDir, `${lane.name}.tap`);
  if (index === 0) child.stdout.pipe(process.stdout);
  else child.stdout.pipe(createWriteStream(lane.log));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      lane.seconds = Math.round((Date.now() - started) / 1000);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

const codes = await Promise.all(lanes.map(runLane));
for (const [index, lane] of lanes.entries()) {
  if (index > 0) {
    process.stdout.write(`\n# ---- lane "${lane.name}" (${lane.files.length} files) ----\n`);
    process.stdout.write(readFileSync(lane.log));
  }
}
for (const [index, lane] of lanes.entries()) {
  process.stdout.write(`# lane ${lane.name}: ${lane.files.length} files, ${lane.seconds} s, ${codes[index] === 0 ? 'passed' : `FAILED (exit ${codes[index]})`}\n`);
}
rmSync(logDir, { recursive: true, force: true });
process.exitCode = codes.every((code) => code === 0) ? 0 : 1;
