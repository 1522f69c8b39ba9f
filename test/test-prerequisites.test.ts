/**
 * The Debian packages the suite needs are listed once, in scripts/test-prerequisites.sh, which
 * both `npm test` (pretest) and .ci/run run: on a fresh Debian machine it names or installs what is
 * missing, and with everything installed it does nothing, needing no network.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { chrootUnavailable, suiteRoots } from './helpers/chroot.ts';
import { REPO_ROOT } from './helpers/processes.ts';

const SCRIPT = join(REPO_ROOT, 'scripts/test-prerequisites.sh');
const EX_UNAVAILABLE = 69;

/** The package list, as the script itself defines it. */
function listedPackages(): string[] {
  const match = /^PACKAGES='([^']*)'$/m.exec(readFileSync(SCRIPT, 'utf8'));
  assert.ok(match, 'scripts/test-prerequisites.sh defines PACKAGES');
  return match[1]!.split(/\s+/).filter(Boolean);
}

describe('test prerequisites', () => {
  test('one list: .ci/run and npm test run scripts/test-prerequisites.sh and neither names a package itself', () => {
    const ci = readFileSync(join(REPO_ROOT, '.ci/run'), 'utf8');
    assert.match(ci, /^scripts\/test-prerequisites\.sh$/m);
    assert.ok(ci.search(/^scripts\/test-prerequisites\.sh$/m) < ci.search(/^npm test$/m), 'before the tests run');
    assert.doesNotMatch(ci, /apt-get/, '.ci/run keeps no package list of its own');
    const scripts = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
    assert.equal(scripts.pretest, 'scripts/test-prerequisites.sh', 'npm test runs it first');
    for (const name of ['shellcheck', 'minisign', 'debootstrap', 'systemd-container', 'python3-grpcio']) assert.ok(listedPackages().includes(name), name);
  });

  test('the script and .ci/run are shellcheck clean', () => {
    const checked = spawnSync('shellcheck', [SCRIPT, join(REPO_ROOT, '.ci/run')], { encoding: 'utf8' });
    assert.equal(checked.status, 0, checked.stdout + checked.stderr);
  });

  test('with every package installed it exits 0 silently without the network (no apt-get update)', () => {
    // A new network namespace has no route anywhere: an apt-get update would fail or complain.
    const offline = spawnSync('unshare', ['--net', 'sh', SCRIPT], { encoding: 'utf8', timeout: 60_000 });
    assert.deepEqual({ status: offline.status, stdout: offline.stdout, stderr: offline.stderr }, { status: 0, stdout: '', stderr: '' });
  });

  describe('on a fresh Debian root', { skip: chrootUnavailable() }, () => {
    const newRoot = suiteRoots();

    // A minbase root (plus systemd, see helpers/chroot.ts) lacks every other listed package.
    const missingInFreshRoot = (): string[] => listedPackages().filter((name) => name !== 'systemd');
    const freshRoot = () => {
      const root = newRoot();
      mkdirSync(root.at('repo/scripts'), { recursive: true });
      copyFileSync(SCRIPT, root.at('repo/scripts/test-prerequisites.sh'));
      return root;
    };

    test('as a user, it exits 69 naming every missing package and the one command that installs them', () => {
      const root = freshRoot();
      const result = root.run(['sh', '/repo/scripts/test-prerequisites.sh'], { userspec: '65534:65534' });
      assert.equal(result.code, EX_UNAVAILABLE, result.stdout + result.stderr);
      assert.deepEqual(/not installed:(.*)$/m.exec(result.stderr)?.[1]?.trim().split(' '), missingInFreshRoot());
      assert.match(result.stderr, /install them with: sudo scripts\/test-prerequisites\.sh/);
    });

    test('as root, it runs apt-get update and install for exactly the missing packages (here without a network, so apt fails and so does the script)', () => {
      const root = freshRoot();
      const result = root.run(['unshare', '--net', 'sh', '/repo/scripts/test-prerequisites.sh'], { timeoutMs: 120_000 });
      assert.notEqual(result.code, 0, 'a failed install fails the tests');
      assert.deepEqual(/^test-prerequisites: installing:(.*)$/m.exec(result.stderr)?.[1]?.trim().split(' '), missingInFreshRoot());
      assert.match(result.stdout + result.stderr, /apt|Temporary failure|Unable to locate package/i);
    });
  });
});
