import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { TestAppliance } from './helpers/appliance.ts';
import { TestRoot } from './helpers/chroot.ts';
import { linuxX64Executable, REPO_ROOT, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * The whole air-gap journey with the real artefacts: the single-executable agent from
 * build:agents, a bundle from `ct-ops-bundle build` on the appliance, `ct-ops-bundle verify`,
 * sha256sum and minisign at the transfer station, install.sh as root in a throwaway Debian
 * root, and the installed agent enrolling, waiting for approval and streaming.
 */

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const BUNDLE_BIN = join(REPO_ROOT, 'dist/ct-ops-bundle.js');
const HOSTILE_TAG = '$(touch /tmp/pwned)';

describe('from the appliance to an installed, approved agent with real artefacts', () => {
  let appliance: TestAppliance;
  let root: TestRoot;
  const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-journey-'));

  before(async () => {
    await linuxX64Executable();
    // Started from the repository, the appliance trusts the development release key that signed the build.
    appliance = await TestAppliance.start();
    root = TestRoot.create();
  });
  after(async () => {
    await appliance?.dispose();
    root?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('a bundle built on the appliance verifies offline, installs with install.sh and enrols after an admin approves', { timeout: 240_000 }, async () => {
    const built = await run(process.execPath, [
      BUNDLE_BIN, 'build', '--data-dir', appliance.dataDir, '--os', 'linux', '--arch', 'x64',
      '--address', `127.0.0.1:${appliance.grpcPort}`, '--tag', `site:${HOSTILE_TAG}`, '--out', scratch, '--json',
    ], {}, 120_000);
    assert.equal(built.code, 0, built.stderr);
    const bundle = JSON.parse(built.stdout) as { path: string; token: { mode: string; id: string } };
    assert.equal(bundle.token.mode, 'new');
    const tokens = await appliance.cliJson<Array<{ id: string; source: string; max_uses: number }>>('tokens', 'list');
    assert.deepEqual(
      (({ source, max_uses }) => ({ source, max_uses }))(tokens.find((token) => token.id === bundle.token.id)!),
      { source: 'install-bundle', max_uses: 1 },
    );

    // The transfer station: our verifier, then the standard tools on the extracted files.
    const verified = await run(process.execPath, [BUNDLE_BIN, 'verify', bundle.path, '--pubkey', join(appliance.dataDir, 'bundle.pub')]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    const extractTo = root.at('bundle');
    mkdirSync(extractTo, { recursive: true });
    assert.equal((await run('unzip', ['-q', bundle.path, '-d', extractTo])).code, 0);
    const [top] = readdirSync(extractTo);
    assert.equal(top, `ct-ops-agent-${VERSION}-linux-x64`);
    const folder = join(extractTo, top!);
    assert.equal((await run('sh', ['-c', `cd "${folder}" && sha256sum --quiet -c SHA256SUMS`])).code, 0);
    const minisign = await run('minisign', ['-Vm', join(folder, 'SHA256SUMS'), '-p', join(appliance.dataDir, 'bundle.pub')]);
    assert.equal(minisign.code, 0, minisign.stderr);

    // The isolated host: install as root with the bundle key the operator brought (its full base64
    // line; checked with openssl, the Debian root has no minisign), then the agent as the ct-ops user,
    // as the unit runs it.
    root.addHostTool('/usr/bin/openssl');
    const keyLine = (path: string): string => readFileSync(path, 'utf8').split('\n')[1]!;
    const installed = root.run([`/bundle/${top}/install.sh`, '--no-start', '--bundle-key', keyLine(join(appliance.dataDir, 'bundle.pub'))]);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    assert.match(installed.stdout, /SHA256SUMS signature verified with bundle key [0-9A-F]{16}/);
    // What the root helper checks updates against: the appliance's release key (here the development key, which it reads in place) and this version, root-owned.
    assert.equal(keyLine(root.at('etc/ct-ops/release.pub')), keyLine(join(REPO_ROOT, '.dev-keys', 'release.pub')));
    assert.equal(readFileSync(root.at('usr/local/libexec/ct-ops/agent.version'), 'utf8'), `${VERSION}\n`);
    // An absolute link inside the root: read it rather than follow it on this machine.
    assert.equal(readlinkSync(root.at('etc/systemd/system/multi-user.target.wants/ct-ops-agent.service')), '/etc/systemd/system/ct-ops-agent.service');
    root.mountProc();
    const account = root.account('ct-ops')!;
    const agent = root.spawn(['/usr/local/bin/ct-ops-agent', '-config', '/etc/ct-ops/agent.toml'], { userspec: `${account.uid}:${account.gid}` });
    try {
      const response = await agent.waitForLog('registration response', {}, 60_000);
      assert.match(String(response.status), /pending/i, 'a bundle token does not auto-approve');
      const hostId = String(response.agent_id);
      assert.equal((await appliance.cli('hosts', 'approve', hostId)).code, 0);
      await agent.waitForLog('heartbeat stream opened', {}, 30_000);
      await waitFor('the host online', async () => (await appliance.host(hostId)).status === 'online', 20_000);
      const host = await appliance.host(hostId);
      assert.deepEqual(host.tags, { site: HOSTILE_TAG }, 'the hostile tag arrived as a plain string');
      assert.ok(!existsSync(root.at('tmp/pwned')) && !existsSync('/tmp/pwned'), 'the tag was never executed');
      assert.ok(!agent.stdout.includes(readFileSync(root.at('etc/ct-ops/agent.toml'), 'utf8').match(/tok_[A-Za-z0-9_-]+/)![0]), 'the token never appears in the log');
    } finally {
      await agent.stop();
    }
    const tokensAfter = await appliance.cliJson<Array<{ id: string; state: string }>>('tokens', 'list');
    assert.equal(tokensAfter.find((token) => token.id === bundle.token.id)?.state, 'used-up');
  });
});
