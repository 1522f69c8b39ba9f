/**
 * The first-start text's next steps are commands a new user pastes as printed, from where the
 * appliance was started: from a clone (npm), by its script path, or as the installed command.
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { APPLIANCE_BIN, REPO_ROOT } from './helpers/processes.ts';
import { hasUnsafeSingleLineText } from '../common/agent-text.ts';
import { shellWord } from '../appliance/cli/invocation.ts';
import { StopWaiting, waitFor } from './helpers/wait.ts';

const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-first-start-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The environment of a shell a person opened: none of the npm_* variables of the test runner. */
function personEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return { ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('npm_'))), ...extra };
}

const SERVE_FLAGS = ['--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0'];

interface StartedAppliance {
  /** The "Next steps" command lines of the first-start text, comments cut. */
  readonly nextSteps: string[];
  stop(): Promise<void>;
}

/** Starts the appliance with `command args` in cwd, in its own process group (npm's children stop with it), and waits for the first-start text. */
async function startAppliance(command: string, args: readonly string[], cwd: string, env: NodeJS.ProcessEnv): Promise<StartedAppliance> {
  const child = spawn(command, args, { cwd, env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGTERM');
    await exited;
  };
  try {
    const text = await waitFor('the first-start text', () => {
      if (child.exitCode !== null) throw new StopWaiting(`exited ${child.exitCode}: ${stderr.slice(-2000)}`);
      const start = stderr.indexOf('Next steps');
      return start >= 0 && stderr.slice(start).includes('\n\n') && stderr.slice(start);
    }, 60_000);
    const nextSteps = text.split('\n').slice(1).filter((line) => line.startsWith('  ')).map((line) => line.replace(/\s+#.*$/, '').trim());
    return { nextSteps, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Runs one printed line in a POSIX shell, as a person pasting it would. */
function runAsPrinted(line: string, cwd: string, env: NodeJS.ProcessEnv): { status: number | null; stdout: string; stderr: string } {
  return spawnSync('sh', ['-c', line], { cwd, env, encoding: 'utf8', timeout: 60_000 });
}

/**
 * Every next step begins with `prefix`, and the printed `tokens create` and `hosts list` lines,
 * run as printed while the appliance runs, create a token and list no hosts. Stops the appliance.
 */
async function assertNextStepsWork(appliance: StartedAppliance, prefix: string, cwd: string, env: NodeJS.ProcessEnv): Promise<void> {
  try {
    assert.ok(appliance.nextSteps.length > 0 && appliance.nextSteps.every((line) => line.startsWith(prefix)), appliance.nextSteps.join('\n'));
    const tokensCreate = appliance.nextSteps.find((line) => line.includes(' tokens create '));
    const hostsList = appliance.nextSteps.find((line) => line.includes(' hosts list '));
    assert.ok(tokensCreate && hostsList, `next steps: ${appliance.nextSteps.join(' | ')}`);
    const created = runAsPrinted(tokensCreate, cwd, env);
    assert.equal(created.status, 0, `${tokensCreate}\n${created.stderr}`);
    assert.match(created.stdout, /^token id: etk_[0-9a-f]+$/m);
    const listed = runAsPrinted(hostsList, cwd, env);
    assert.equal(listed.status, 0, `${hostsList}\n${listed.stderr}`);
    // npm prints its own "> script" lines before the command's output.
    assert.match(listed.stdout, /^\(none\)$/m);
  } finally {
    await appliance.stop();
  }
}

describe('first-start next steps', () => {
  test('started with npm start from a clone, the printed commands are npm run appliance -- … and work as printed', async () => {
    const dataDir = join(scratch, 'npm-data');
    const env = personEnv();
    const appliance = await startAppliance('npm', ['start', '--', '--data-dir', dataDir, ...SERVE_FLAGS], REPO_ROOT, env);
    await assertNextStepsWork(appliance, 'npm run appliance -- ', REPO_ROOT, env);
  });

  test('started as node dist/ct-ops-appliance.js with a data directory holding a space and a quote, the printed commands work as printed', async () => {
    const dataDir = join(scratch, "it's my data");
    const env = personEnv();
    const appliance = await startAppliance(process.execPath, ['dist/ct-ops-appliance.js', 'serve', '--data-dir', dataDir, ...SERVE_FLAGS], REPO_ROOT, env);
    await assertNextStepsWork(appliance, 'node dist/ct-ops-appliance.js ', REPO_ROOT, env);
  });

  test('started as the installed ct-ops-appliance command on PATH, the printed commands name it and work as printed elsewhere', async () => {
    const bin = join(scratch, 'bin');
    const home = join(scratch, 'elsewhere');
    mkdirSync(bin);
    mkdirSync(home);
    // What npm's bin link (or an image) installs: the command on PATH is a link to the entry script.
    symlinkSync(APPLIANCE_BIN, join(bin, 'ct-ops-appliance'));
    const env = personEnv({ PATH: `${bin}:${process.env.PATH ?? ''}` });
    const appliance = await startAppliance('ct-ops-appliance', ['serve', '--data-dir', 'data', ...SERVE_FLAGS], home, env);
    await assertNextStepsWork(appliance, 'ct-ops-appliance ', home, env);
  });

  test('started by a launcher script on PATH that sets CT_OPS_LAUNCHER (the image case), the printed commands name ct-ops-appliance and work as printed elsewhere', async () => {
    const bin = join(scratch, 'launcher-bin');
    const home = join(scratch, 'launcher-home');
    mkdirSync(bin);
    mkdirSync(home);
    // What the image's bin/ct-ops-appliance does: a shell script, not a link to the entry script, that runs it with its own node.
    writeFileSync(join(bin, 'ct-ops-appliance'), `#!/bin/sh\nCT_OPS_LAUNCHER=ct-ops-appliance exec ${shellWord(process.execPath)} ${shellWord(APPLIANCE_BIN)} "$@"\n`, { mode: 0o755 });
    const env = personEnv({ PATH: `${bin}:${process.env.PATH ?? ''}` });
    const appliance = await startAppliance('ct-ops-appliance', ['serve', '--data-dir', 'data', ...SERVE_FLAGS], home, env);
    await assertNextStepsWork(appliance, 'ct-ops-appliance ', home, env);
  });
});

describe('control characters in the data directory', () => {
  test('shellWord quotes a word holding control or bidirectional characters so that bash reads it back unchanged and the printed word holds none of them', () => {
    for (const word of ['data\x1b]0;pwned\x07', 'a\x9b31mb', "it's \\ here\n", 'x\u202egnp.exe', 'tab\there']) {
      const quoted = shellWord(word);
      assert.ok(!hasUnsafeSingleLineText(quoted), JSON.stringify(quoted));
      const read = spawnSync('bash', ['-c', `printf %s ${quoted}`], { encoding: 'utf8' });
      assert.equal(read.stdout, word, quoted);
    }
  });

  test('started with an escape sequence in the data directory name, the first-start text shows it escaped and the printed commands still work in bash', async () => {
    const dataDir = join(scratch, 'data\x1b[31m red');
    const env = personEnv();
    const child = spawn(process.execPath, ['dist/ct-ops-appliance.js', 'serve', '--data-dir', dataDir, ...SERVE_FLAGS], { cwd: REPO_ROOT, env, detached: true, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = once(child, 'exit');
    try {
      const text = await waitFor('the first-start text', () => stderr.includes('Next steps') && stderr.slice(stderr.indexOf('Next steps')).includes('\n\n') && stderr, 60_000);
      const welcome = text.slice(text.indexOf('CT-Ops appliance is running'));
      assert.ok(!welcome.includes('\x1b'), 'no raw escape reaches the terminal');
      assert.ok(welcome.includes('CA certificate for agents: ' + join(scratch, 'data\\x1b[31m red') + '/ca.crt'), welcome);
      const hostsList = welcome.split('\n').find((line) => line.includes(' hosts list '))!.replace(/\s+#.*$/, '').trim();
      const listed = spawnSync('bash', ['-c', hostsList], { cwd: REPO_ROOT, env, encoding: 'utf8', timeout: 60_000 });
      assert.equal(listed.status, 0, `${hostsList}\n${listed.stderr}`);
      assert.match(listed.stdout, /^\(none\)$/m);
    } finally {
      if (child.exitCode === null && child.signalCode === null) process.kill(-child.pid!, 'SIGTERM');
      await exited;
    }
  });
});
