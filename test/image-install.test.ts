import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { keyIdHex, publicKeyFile, signingKeyFromSeed } from '../common/minisign.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestRoot } from './helpers/chroot.ts';
import { builtImage, type BuiltImage } from './helpers/image.ts';
import { freePorts, imageOnMedia, INSTALLED_DATA_DIR, installedHealthz, nodeExecutables, releaseKeyLine, rewriteSha256Sums, runInstaller } from './helpers/installed-image.ts';
import { BootedSystem, nspawnUnavailable } from './helpers/nspawn.ts';
import { LoggedProcess, run } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * The appliance image crosses the air gap: in a Debian root with no Node anywhere, booted with a
 * real systemd, the image's own install.sh refuses a tampered copy or a wrong release key,
 * installs the genuine one as a hardened service that answers /healthz, prints the first admin's
 * one-time password once, imports the image's agent release for self-update, and is idempotent;
 * the installed appliance enrols and streams the image's own agent and builds a bundle for every
 * OS/arch from the image's own release; the agent installed on the appliance's own host from such
 * a bundle enrols, and its uninstall leaves the appliance's files alone; uninstall.sh keeps the data unless --purge.
 */

const UNIT = 'ct-ops-appliance.service';
const TARGETS = [['linux', 'x64'], ['linux', 'arm64'], ['darwin', 'x64'], ['darwin', 'arm64'], ['windows', 'x64'], ['windows', 'arm64']] as const;
/** install.sh's documented exit codes (image/install.sh header): a usage error, a refused image, a refused preflight. */
const EXIT_USAGE = 1;
const EXIT_TAMPERED = 4;
const EXIT_PREFLIGHT = 7;

describe('the appliance image installed from media in a booted Debian root without Node', { skip: nspawnUnavailable(), timeout: 20 * 60_000 }, () => {
  let image: BuiltImage;
  let root: TestRoot;
  let system: BootedSystem;
  let ports: { http: number; grpc: number };
  let genuine: string;
  let tampered: string;
  let agent: TestAgent | undefined;
  /** The linux-x64 bundle the installed ct-ops-bundle built, inside the root. */
  let linuxBundle: string;
  /** Any node the Debian root had before the install: none, asserted in before(). */
  let nodesBefore: string[];

  before(async () => {
    image = await builtImage('linux-x64');
    root = TestRoot.create();
    nodesBefore = nodeExecutables(root);
    genuine = imageOnMedia(root, image, 'genuine');
    tampered = imageOnMedia(root, image, 'tampered');
    // One flipped byte in the middle of the bundled appliance.
    const target = root.at(`${tampered}/dist/ct-ops-appliance.js`);
    const bytes = readFileSync(target);
    bytes[bytes.length >> 1] ^= 0x01;
    writeFileSync(target, bytes);
    // The Debian root has no signature verifier; minisign is what a site would install for --release-key.
    root.addHostTool('/usr/bin/minisign');
    ports = await freePorts();
    system = await BootedSystem.boot(root);
  });
  after(async () => {
    await agent?.dispose();
    await system?.dispose();
    root?.dispose();
  });

  /** Nothing of the appliance is on the system: no version folder or staging left, no unit, no account, no config. */
  function assertNothingInstalled(): void {
    assert.deepEqual(existsSync(root.at('opt/ct-ops')) ? readdirSync(root.at('opt/ct-ops')) : [], []);
    assert.equal(existsSync(root.at(`etc/systemd/system/${UNIT}`)), false);
    assert.equal(existsSync(root.at('etc/ct-ops/appliance.toml')), false);
    assert.equal(root.account('ct-ops-appliance'), undefined);
  }

  test('the Debian root has no node at all before the install', () => {
    assert.deepEqual(nodesBefore, []);
  });

  test('a flipped byte in dist/ct-ops-appliance.js is refused with exit 4 and nothing is installed', async () => {
    const refused = await runInstaller(system, tampered, ['--san', 'localhost', '--http-port', String(ports.http), '--grpc-port', String(ports.grpc)]);
    assert.equal(refused.code, EXIT_TAMPERED, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /checksum mismatch/);
    assertNothingInstalled();
  });

  test('a release key other than the one that signed the image is refused with exit 4 and nothing is installed', async () => {
    const stranger = signingKeyFromSeed(randomBytes(32));
    const strangerLine = publicKeyFile(stranger).trim().split('\n').at(-1)!;
    const refused = await runInstaller(system, genuine, ['--release-key', strangerLine, '--release-key-id', keyIdHex(stranger.keyId)]);
    assert.equal(refused.code, EXIT_TAMPERED, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /SHA256SUMS\.minisig does not verify/);
    assertNothingInstalled();
  });

  test("a substituted verifier and appliance with SHA256SUMS written afresh under the old signature is refused with exit 4: the media's own verifier is never run", async () => {
    const substituted = imageOnMedia(root, image, 'substituted');
    const top = root.at(substituted);
    // What an attacker with the media would do: a verifier that says yes, a changed program, sums that match both.
    writeFileSync(join(top, 'installers/install.sh'), '#!/bin/sh\nexit 0\n');
    writeFileSync(join(top, 'dist/ct-ops-appliance.js'), `console.log('not the appliance');\n${readFileSync(join(top, 'dist/ct-ops-appliance.js'), 'utf8')}`);
    await rewriteSha256Sums(top);
    const refused = await runInstaller(system, substituted, ['--dry-run', '--release-key', releaseKeyLine(image)]);
    assert.equal(refused.code, EXIT_TAMPERED, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /SHA256SUMS\.minisig does not verify/);
    assertNothingInstalled();
  });

  test('a system folder as the data directory is refused with exit 1, a folder holding foreign files with exit 7, before anything changes', async () => {
    const system_ = await runInstaller(system, genuine, ['--dry-run', '--data-dir', '/usr']);
    assert.equal(system_.code, EXIT_USAGE, system_.stdout + system_.stderr);
    assert.match(system_.stderr, /data directory \/usr is a system folder/);
    mkdirSync(root.at('srv/foreign'), { recursive: true });
    writeFileSync(root.at('srv/foreign/notes.txt'), 'not the appliance\'s');
    const foreign = await runInstaller(system, genuine, ['--dry-run', '--data-dir', '/srv/foreign']);
    assert.equal(foreign.code, EXIT_PREFLIGHT, foreign.stdout + foreign.stderr);
    assert.match(foreign.stderr, /holds files that are not the appliance's/);
    assertNothingInstalled();
  });

  test("an existing appliance.toml is read by the image's own appliance: a single-quoted data_dir holding '#' is the one used", async () => {
    mkdirSync(root.at('etc/ct-ops'), { recursive: true });
    writeFileSync(root.at('etc/ct-ops/appliance.toml'), `data_dir = '/srv/quoted' # a "comment" with a '#'\nhttp_port = ${ports.http}\ngrpc_port = ${ports.grpc}\n`);
    try {
      const dry = await runInstaller(system, genuine, ['--dry-run']);
      assert.equal(dry.code, 0, dry.stdout + dry.stderr);
      assert.match(dry.stdout, /^\[dry-run\] mkdir -p \/srv\/quoted$/m);
    } finally {
      rmSync(root.at('etc/ct-ops'), { recursive: true });
    }
    assertNothingInstalled();
  });

  test('--dry-run verifies the image, prints each action and changes nothing', async () => {
    const dry = await runInstaller(system, genuine, ['--dry-run', '--release-key', releaseKeyLine(image), '--http-port', String(ports.http), '--grpc-port', String(ports.grpc)]);
    assert.equal(dry.code, 0, dry.stdout + dry.stderr);
    assert.match(dry.stdout, /^\[dry-run\] systemctl enable ct-ops-appliance\.service$/m);
    assert.match(dry.stdout, /dry run: nothing was changed/);
    assertNothingInstalled();
  });

  test('install.sh with the release key installs a running, healthy, hardened service, prints the one-time password, and a second run changes nothing', async () => {
    const installed = await runInstaller(system, genuine, ['--release-key', releaseKeyLine(image), '--san', 'localhost', '--san', '127.0.0.1', '--http-port', String(ports.http), '--grpc-port', String(ports.grpc)]);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr + (await system.journal(UNIT)));
    assert.match(installed.stdout, /SHA256SUMS signature verified with release key/);
    assert.match(installed.stdout, /^ {2}password: \S{12,}$/m);
    // Printed from DATA_DIR/initial-admin-password: the journal, which the adm group reads, never holds it.
    const shownPassword = /^ {2}password: (\S+)$/m.exec(installed.stdout)![1]!;
    assert.ok(!(await system.journal(UNIT)).includes(shownPassword), 'the password is not in the journal');
    assert.match(installed.stdout, /^CA certificate for agents: .*\(SHA-256 [0-9A-F:]{95}\)$/m);
    assert.match(installed.stdout, /^Trusted agent release key: .*\(minisign key id [0-9A-F]{16}\)$/m);
    // The image's own agents are a release the appliance can roll out (issue 12), checked as any import.
    assert.match(installed.stdout, new RegExp(`imported: agent release ${image.version.replaceAll('.', '\\.')}, signed by release key [0-9A-F]{16}`));
    const releases = await system.exec(['ct-ops-appliance', 'releases', 'list', '--data-dir', INSTALLED_DATA_DIR, '--json']);
    assert.equal(releases.code, 0, releases.stderr);
    assert.deepEqual((JSON.parse(releases.stdout) as Array<{ version: string; state: string }>).map(({ version, state }) => ({ version, state })), [{ version: image.version, state: 'active' }]);

    assert.deepEqual(await system.show(UNIT, 'ActiveState', 'User'), { ActiveState: 'active', User: 'ct-ops-appliance' });
    const healthz = await installedHealthz(root, ports.http);
    assert.equal(healthz.status, 200);
    assert.equal(healthz.body.version, image.version);
    // The only node now is the image's own runtime.
    assert.deepEqual(nodeExecutables(root), [`opt/ct-ops/${image.version}/runtime/bin/node`]);
    const version = await system.exec(['ct-ops-appliance', '--version']);
    assert.equal(version.stdout.trim(), image.version, version.stderr);
    const doctor = await system.exec(['ct-ops-appliance', 'doctor']);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    const verified = await system.exec(['systemd-analyze', 'verify', `/etc/systemd/system/${UNIT}`]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.equal(verified.stderr.trim(), '');

    const mainPid = (await system.show(UNIT, 'MainPID')).MainPID;
    const again = await runInstaller(system, genuine, ['--release-key', releaseKeyLine(image)]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.match(again.stdout, /nothing changed/);
    assert.match(again.stdout, /already imported \(same files\): agent release/, 'the import is tried again, and is a no-op');
    assert.doesNotMatch(again.stdout, /password:/);
    assert.equal((await system.show(UNIT, 'MainPID')).MainPID, mainPid);
  });

  test("the image's own linux-x64 agent enrols and streams; the installed CLI approves it", async () => {
    const cli = async (...args: string[]): Promise<Record<string, unknown>> => {
      const result = await system.exec(['ct-ops-appliance', ...args, '--data-dir', INSTALLED_DATA_DIR, '--json']);
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
      return JSON.parse(result.stdout) as Record<string, unknown>;
    };
    const token = (await cli('tokens', 'create')) as { token: string };
    agent = new TestAgent({ address: `127.0.0.1:${ports.grpc}`, caCertFile: root.at(`${INSTALLED_DATA_DIR}/ca.crt`), orgToken: token.token, intervalSecs: 5 });
    const executable = root.at(`opt/ct-ops/${image.version}/dist/agents/${image.version}/ct-ops-agent-linux-x64`);
    agent.process = new LoggedProcess(executable, ['-config', agent.configPath], { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile });
    const pending = await waitFor('the agent to enrol', async () => ((await cli('hosts', 'list')) as unknown as Array<{ id: string; status: string }>).find((host) => host.status === 'pending'), 60_000, 500);
    await cli('hosts', 'approve', pending.id);
    // A pending agent polls every pending_poll_secs (30 s by default) before it learns of the approval.
    const online = await waitFor('the host online with a heartbeat', async () => {
      const host = (await cli('hosts', 'show', pending.id)) as { status: string; last_heartbeat_at: string | null };
      return host.status === 'online' && host.last_heartbeat_at !== null && host;
    }, 90_000, 500);
    assert.equal(online.status, 'online');
  });

  test("the installed ct-ops-bundle builds a bundle for every OS/arch from the image's own release", async () => {
    for (const [os, arch] of TARGETS) {
      const built = await system.exec(['ct-ops-bundle', 'build', '--data-dir', INSTALLED_DATA_DIR, '--os', os, '--arch', arch, '--address', `127.0.0.1:${ports.grpc}`, '--out', '/root', '--json']);
      assert.equal(built.code, 0, `${os}-${arch}: ${built.stderr}`);
      const { path } = JSON.parse(built.stdout) as { path: string };
      assert.ok(existsSync(root.at(path)), path);
      assert.match(join(path), new RegExp(`${os}-${arch}`));
      if (os === 'linux' && arch === 'x64') linuxBundle = path;
    }
  });

  test("an agent installed on the appliance's host from its bundle enrols, and its uninstall leaves the appliance healthy with its files intact", async () => {
    /** What of the appliance an agent install or uninstall must not touch: file contents, and the data folder's owner and mode. */
    const applianceFiles = (): Record<string, string> => {
      const data = statSync(root.at(INSTALLED_DATA_DIR));
      return {
        config: readFileSync(root.at('etc/ct-ops/appliance.toml'), 'utf8'),
        releaseKey: readFileSync(root.at('etc/ct-ops/appliance-release.pub'), 'utf8'),
        dataDir: `${data.uid} ${(data.mode & 0o777).toString(8)}`,
        data: readdirSync(root.at(INSTALLED_DATA_DIR)).filter((name) => !name.startsWith('appliance.db')).sort().join(' '),
      };
    };
    const before = applianceFiles();
    const hostsNow = async (): Promise<unknown[]> => JSON.parse((await system.exec(['ct-ops-appliance', 'hosts', 'list', '--data-dir', INSTALLED_DATA_DIR, '--json'])).stdout) as unknown[];
    const hostsBefore = (await hostsNow()).length;
    // As an admin does: unzip the bundle on the host and run its install.sh (which starts the agent's units).
    assert.equal((await run('unzip', ['-q', root.at(linuxBundle), '-d', root.at('root/agent-bundle')])).code, 0);
    const [bundleTop] = readdirSync(root.at('root/agent-bundle'));
    const installed = await system.exec([`/root/agent-bundle/${bundleTop}/install.sh`], { timeoutMs: 120_000 });
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    assert.deepEqual(applianceFiles(), before, "the agent's install.sh changed none of the appliance's files");
    await waitFor('the host agent to enrol with the local appliance', async () => (await hostsNow()).length > hostsBefore, 60_000, 500);

    const removed = await system.exec(['/usr/local/libexec/ct-ops/uninstall.sh'], { timeoutMs: 120_000 });
    assert.equal(removed.code, 0, removed.stdout + removed.stderr);
    assert.match(removed.stdout, /CT-Ops agent removed/);
    for (const path of ['etc/ct-ops/agent.toml', 'etc/ct-ops/ca.crt', 'var/lib/ct-ops/agent', 'var/lib/ct-ops/requests', 'usr/local/bin/ct-ops-agent']) {
      assert.equal(existsSync(root.at(path)), false, `the agent's ${path} removed`);
    }
    assert.deepEqual(applianceFiles(), before, "the agent's uninstall.sh changed none of the appliance's files");
    assert.equal((await system.show(UNIT, 'ActiveState')).ActiveState, 'active');
    assert.equal((await installedHealthz(root, ports.http)).status, 200);
    const doctor = await system.exec(['ct-ops-appliance', 'doctor']);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  });

  test('uninstall.sh removes the service and the image but keeps configuration and data; --purge removes those and the account', async () => {
    await agent?.dispose();
    const removed = await system.exec([`${genuine}/uninstall.sh`]);
    assert.equal(removed.code, 0, removed.stdout + removed.stderr);
    assert.equal(existsSync(root.at('opt/ct-ops')), false);
    assert.equal(existsSync(root.at(`etc/systemd/system/${UNIT}`)), false);
    assert.equal(existsSync(root.at('usr/local/bin/ct-ops-appliance')), false);
    assert.ok(existsSync(root.at('etc/ct-ops/appliance.toml')));
    assert.ok(existsSync(root.at(`${INSTALLED_DATA_DIR}/appliance.db`)));
    assert.notEqual((await system.exec(['systemctl', 'is-active', UNIT])).stdout.trim(), 'active');
    const purged = await system.exec([`${genuine}/uninstall.sh`, '--purge']);
    assert.equal(purged.code, 0, purged.stdout + purged.stderr);
    assert.equal(existsSync(root.at('etc/ct-ops/appliance.toml')), false);
    assert.equal(existsSync(root.at(INSTALLED_DATA_DIR)), false);
    assert.equal(existsSync(root.at('etc/ct-ops')), false, 'the emptied /etc/ct-ops removed');
    assert.equal(existsSync(root.at('var/lib/ct-ops')), false, 'the emptied /var/lib/ct-ops removed');
    assert.equal(root.account('ct-ops-appliance'), undefined);
    assertNothingInstalled();
  });
});
