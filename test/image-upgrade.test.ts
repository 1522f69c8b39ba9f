import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestRoot } from './helpers/chroot.ts';
import { builtImage, type BuiltImage } from './helpers/image.ts';
import { freePorts, imageOnMedia, INSTALLED_DATA_DIR, installedHealthz, otherVersionOnMedia, runInstaller } from './helpers/installed-image.ts';
import { BootedSystem, nspawnUnavailable } from './helpers/nspawn.ts';
import { LoggedProcess } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * Upgrades with install.sh under a real systemd: version A (the built image) with a token and an
 * approved host, upgraded to B (the same image under another version) keeps its data and the old
 * version's folder; a broken B' — its appliance wrecks the database and exits 1 when served, as a
 * bad migration might — fails its health check, and install.sh switches back to B and restores
 * the pre-upgrade data: B runs again, with the host.
 */

const UNIT = 'ct-ops-appliance.service';
/** install.sh's documented exit codes (image/install.sh header): a failed step (the previous version started again), an upgrade rolled back. */
const EXIT_STEP = 6;
const EXIT_ROLLED_BACK = 8;

describe('upgrading the installed appliance image, and rolling back a broken one', { skip: nspawnUnavailable(), timeout: 20 * 60_000 }, () => {
  let image: BuiltImage;
  let root: TestRoot;
  let system: BootedSystem;
  let ports: { http: number; grpc: number };
  let versionA: string;
  let mediaA: string;
  let agent: TestAgent | undefined;
  const versionB = (): string => `${versionA}-next`;
  const versionBroken = (): string => `${versionA}-broken`;

  before(async () => {
    image = await builtImage('linux-x64');
    versionA = image.version;
    root = TestRoot.create();
    mediaA = imageOnMedia(root, image, 'a');
    ports = await freePorts();
    system = await BootedSystem.boot(root);
  });
  after(async () => {
    await agent?.dispose();
    await system?.dispose();
    root?.dispose();
  });

  const cli = async (...args: string[]): Promise<unknown> => {
    const result = await system.exec(['ct-ops-appliance', ...args, '--data-dir', INSTALLED_DATA_DIR, '--json']);
    assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    return JSON.parse(result.stdout);
  };
  const current = (): string => readlinkSync(root.at('opt/ct-ops/current'));
  let hostId = '';
  let tokenId = '';

  test('version A installs; a token and an approved host are created on it', async () => {
    const installed = await runInstaller(system, mediaA, ['--san', 'localhost', '--http-port', String(ports.http), '--grpc-port', String(ports.grpc)]);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr + (await system.journal(UNIT)));
    const token = (await cli('tokens', 'create')) as { id: string; token: string };
    tokenId = token.id;
    agent = new TestAgent({ address: `127.0.0.1:${ports.grpc}`, caCertFile: root.at(`${INSTALLED_DATA_DIR}/ca.crt`), orgToken: token.token, intervalSecs: 5 });
    agent.process = new LoggedProcess(root.at(`opt/ct-ops/${versionA}/dist/agents/${versionA}/ct-ops-agent-linux-x64`), ['-config', agent.configPath], { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile });
    const pending = await waitFor('the agent to enrol', async () => ((await cli('hosts', 'list')) as Array<{ id: string; status: string }>).find((host) => host.status === 'pending'), 60_000, 500);
    hostId = pending.id;
    await cli('hosts', 'approve', hostId);
    // A pending agent polls every pending_poll_secs (30 s by default) before it learns of the approval.
    await waitFor('the host online', async () => ((await cli('hosts', 'show', hostId)) as { status: string }).status === 'online', 90_000, 500);
    await agent.stop();
  });

  let mediaB = '';
  test('an upgrade whose pre-upgrade copy cannot be made (a file where the copies go) exits 6 with A started again, current unchanged', async () => {
    mediaB = await otherVersionOnMedia(root, mediaA, versionB());
    writeFileSync(root.at('var/lib/ct-ops-backups'), 'in the way');
    try {
      const failed = await runInstaller(system, mediaB, ['--yes']);
      assert.equal(failed.code, EXIT_STEP, failed.stdout + failed.stderr);
      assert.match(failed.stderr, new RegExp(`${versionA.replaceAll('.', '\\.')} was started again`));
    } finally {
      rmSync(root.at('var/lib/ct-ops-backups'));
    }
    assert.equal(current(), versionA);
    assert.equal((await system.show(UNIT, 'ActiveState')).ActiveState, 'active');
    const healthz = await waitFor('A healthy again', async () => {
      const answer = await installedHealthz(root, ports.http).catch(() => undefined);
      return answer?.status === 200 && answer;
    }, 60_000, 500);
    assert.equal(healthz.body.version, versionA);
  });

  test('upgrading to B keeps hosts and tokens, switches current to B, keeps A and a pre-upgrade copy of the data', async () => {
    const upgraded = await runInstaller(system, mediaB, ['--yes']);
    assert.equal(upgraded.code, 0, upgraded.stdout + upgraded.stderr + (await system.journal(UNIT)));
    assert.match(upgraded.stdout, new RegExp(`upgraded from ${versionA} to ${versionB()}`));
    assert.equal(current(), versionB());
    assert.ok(existsSync(root.at(`opt/ct-ops/${versionA}/bin/ct-ops-appliance`)), 'the previous version is kept for a rollback');
    const backups = readdirSync(root.at('var/lib/ct-ops-backups'));
    assert.equal(backups.length, 1);
    assert.match(backups[0]!, new RegExp(`^pre-upgrade-${versionA.replaceAll('.', '\\.')}-\\d{8}T\\d{6}Z$`));
    assert.equal(((await cli('hosts', 'show', hostId)) as { id: string }).id, hostId);
    assert.ok(((await cli('tokens', 'list')) as Array<{ id: string }>).some((token) => token.id === tokenId));
    assert.equal((await installedHealthz(root, ports.http)).status, 200);
  });

  test("a broken B' that wrecks the database is rolled back: exit 8, B runs again on the pre-upgrade data, the host is still there", async () => {
    const mediaBroken = await otherVersionOnMedia(root, mediaA, versionBroken(), (dir) => {
      // As a bad migration might: the database is destroyed, then the start fails.
      const program = join(dir, 'dist/ct-ops-appliance.js');
      const wreck = `import * as brokenFs from 'node:fs';\nif (process.argv[2] === 'serve') { brokenFs.writeFileSync('${INSTALLED_DATA_DIR}/appliance.db', 'not a database'); process.exit(1); }\n`;
      writeFileSync(program, wreck + readFileSync(program, 'utf8'));
    });
    const started = Date.now();
    const failed = await runInstaller(system, mediaBroken, ['--yes', '--health-timeout', '15']);
    assert.equal(failed.code, EXIT_ROLLED_BACK, failed.stdout + failed.stderr);
    assert.match(failed.stderr, new RegExp(`rolled back: ${versionB().replaceAll('.', '\\.')} runs on the data as it was before the upgrade`));
    assert.ok(Date.now() - started < 120_000, 'the rollback ended within two minutes');
    assert.equal(current(), versionB());
    assert.equal((await system.show(UNIT, 'ActiveState')).ActiveState, 'active');
    assert.equal((await installedHealthz(root, ports.http)).status, 200);
    assert.equal(((await cli('hosts', 'show', hostId)) as { id: string }).id, hostId);
    assert.equal(readdirSync(root.at('var/lib/ct-ops-backups')).length, 2);
  });
});
