import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { shiftedClockEnv } from './helpers/faketime.ts';
import { LoggedProcess } from './helpers/processes.ts';

/**
 * The agent's waits are measured on the monotonic clock: a process whose wall clock NTP moves a
 * day mid-wait (libfaketime, a real step of CLOCK_REALTIME) neither gives up at once nor waits a
 * day. Here the uninstall task's wait for the root helper's answer (agent/tasks/uninstall.ts).
 */
test("a wait for the root helper's answer survives the host clock stepping a day forward mid-wait", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-monotonic-'));
  const clockFile = join(dir, 'faketime');
  const answerFile = join(dir, 'result');
  writeFileSync(clockFile, '+0\n');
  const script = `
    import { waitForAnswer } from ${JSON.stringify(new URL('../agent/tasks/uninstall.ts', import.meta.url).pathname)};
    console.log(JSON.stringify({ msg: 'waiting' }));
    const started = performance.now();
    const answer = await waitForAnswer(${JSON.stringify(answerFile)}, new AbortController().signal, 20_000);
    console.log(JSON.stringify({ msg: 'waited', answer: answer ?? null, waited_ms: Math.round(performance.now() - started) }));
  `;
  const child = new LoggedProcess(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], shiftedClockEnv({ timestampFile: clockFile }));
  try {
    // Once the wait has begun: step the clock a day forward, then answer.
    await child.waitForLog('waiting', {}, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    writeFileSync(clockFile, '+1d\n');
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(child.running, true, `still waiting after the clock step: ${child.stderr}`);
    writeFileSync(answerFile, 'uninstall ok\n');
    const waited = await child.waitForLog('waited', {}, 15_000);
    assert.equal(waited.answer, 'uninstall ok', 'the answer was read, not a timeout');
  } finally {
    await child.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
