import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import { publicKeyFile, signingKeyFromSeed, type SigningKey } from '../common/minisign.ts';
import { writeReleaseFiles } from '../scripts/agents/release-files.mjs';
import { assembleLinuxBundleFolder, bundleAgentToml, chrootUnavailable, TestRoot } from './helpers/chroot.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * Issue 8, item 2: the agent's unprivileged account must not become root through the root helper.
 * The real install.sh, ct-ops-agent-helper.sh and uninstall.sh run as root in a throwaway Debian
 * root; every file in the spool is planted as the ct-ops user itself (chroot --userspec), and the
 * releases are signed by the real release signer (scripts/agents/release-files.mjs).
 */

const ARCH = process.arch === 'arm64' ? 'arm64' : 'x64';
const OTHER_ARCH = ARCH === 'x64' ? 'arm64' : 'x64';
const RELEASE_FILE = `ct-ops-agent-linux-${ARCH}`;
const SPOOL = '/var/lib/ct-ops/requests';
const HELPER = '/usr/local/libexec/ct-ops/ct-ops-agent-helper.sh';
/**
 * systemd does not run in a chroot: stand-in systemctls. On restart the stand-in plays the restarted
 * agent's first acknowledged heartbeat: it writes the installed stand-in's version into the spool's
 * "streaming", as the agent does (agent/update/updater.ts streaming). STEADY: an agent that stays up;
 * CRASHING: one that streams, then crash-loops (a new main PID on every look); SILENT: one that stays
 * up but never opens a stream.
 */
const STREAMS_ON_RESTART = `restart*) v=$(sed -n 's/^# stand-in agent \\([0-9.]*\\).*/\\1/p' /usr/local/bin/ct-ops-agent); printf '%s\\n' "$v" >${SPOOL}/streaming ;;`;
const STEADY_SYSTEMCTL = `#!/bin/sh\ncase "$*" in *MainPID*) echo 4242 ;; *ActiveState*) echo active ;; ${STREAMS_ON_RESTART} esac\nexit 0\n`;
const CRASHING_SYSTEMCTL = `#!/bin/sh\ncase "$*" in *MainPID*) n=$(cat /var/log/stub-pid 2>/dev/null || echo 100); n=$((n + 1)); echo "$n" >/var/log/stub-pid; echo "$n" ;; *ActiveState*) echo active ;; ${STREAMS_ON_RESTART} esac\nexit 0\n`;
const SILENT_SYSTEMCTL = '#!/bin/sh\ncase "$*" in *MainPID*) echo 4242 ;; *ActiveState*) echo active ;; esac\nexit 0\n';

/**
 * A stand-in agent: its report-task writes down which uid ran which file (to /tmp, the one place
 * the unprivileged user can write once the agent's folders are gone).
 */
const standInAgent = (label: string): string => `#!/bin/sh
# stand-in agent ${label}
case " $* " in *" report-task "*) ;; *) echo "stand-in ${label}"; exit 0 ;; esac
printf 'uid %s gid %s groups %s exe %s label ${label}\\n' "$(id -u)" "$(id -g)" "$(id -G)" "$0" >/tmp/report-run.txt
`;

describe('the root helper treats everything in the spool as hostile', { skip: chrootUnavailable(), timeout: 20 * 60_000 }, () => {
  const releaseKey = signingKeyFromSeed(randomBytes(32));
  const attackerKey = signingKeyFromSeed(randomBytes(32));
  const installedAgent = standInAgent('0.2.0-installed');
  let root: TestRoot;
  let releases = 0;

  const helper = () => root.run([HELPER], { env: { CT_OPS_UPDATE_SETTLE_SECS: '0', CT_OPS_UPDATE_STREAM_WITHIN_SECS: '3' }, timeoutMs: 60_000 });
  const resultFile = (): string => readFileSync(root.at(`${SPOOL}/result`), 'utf8').trim();
  const installedBinary = (): string => readFileSync(root.at('usr/local/bin/ct-ops-agent'), 'utf8');
  const installedVersion = (): string => readFileSync(root.at('usr/local/libexec/ct-ops/agent.version'), 'utf8').trim();
  /** Runs a shell command as the agent's account inside the root. */
  const asAgent = (script: string) => {
    const ran = root.run(['/bin/sh', '-c', script], { userspec: 'ct-ops:ct-ops' });
    assert.equal(ran.code, 0, `as ct-ops: ${script}\n${ran.stderr}`);
  };
  /** The agent's way to ask: a temporary name, then a rename to "request". */
  const ask = (request: string): void => asAgent(`printf '%s\\n' '${request}' >${SPOOL}/.asking && mv ${SPOOL}/.asking ${SPOOL}/request`);

  /** A release directory readable by everyone in the root, signed like a real release; returns its path inside. */
  async function release(version: string, files: Record<string, string>, options: { key?: SigningKey } = {}): Promise<string> {
    releases += 1;
    const inside = `/releases/r${releases}`;
    mkdirSync(root.at(inside), { recursive: true });
    for (const [name, content] of Object.entries(files)) writeFileSync(root.at(`${inside}/${name}`), content, { mode: 0o755 });
    await writeReleaseFiles({ dir: root.at(inside), files: Object.keys(files), key: options.key ?? releaseKey, version, keyLabel: 'test' });
    return inside;
  }
  /** The agent account copies release files into the spool and asks for the update. */
  function stage(dir: string, request = `update ${RELEASE_FILE}`, names = [RELEASE_FILE, 'SHA256SUMS', 'SHA256SUMS.minisig']): void {
    asAgent(`cp ${names.map((name) => `${dir}/${name}`).join(' ')} ${SPOOL}/`);
    ask(request);
  }
  function assertRefused(result: { code: number | null; stdout: string; stderr: string }, reason: string | RegExp): void {
    assert.equal(result.code, 1, result.stdout + result.stderr);
    const expected = typeof reason === 'string' ? new RegExp(`^update refused ${reason}$`) : reason;
    assert.match(resultFile(), expected);
    assert.match(result.stdout, /^ct-ops-agent-helper: refused: \S+$/m, 'the refusal is logged');
    assert.equal(installedBinary(), installedAgent, '/usr/local/bin/ct-ops-agent unchanged');
    assert.equal(installedVersion(), '0.2.0');
    assert.ok(!existsSync(root.at(`${SPOOL}/request`)), 'request consumed');
  }
  /** Hides a tool from the root for the duration of fn (the overlay copy is private). */
  function without<T>(tool: string, fn: () => T): T {
    const path = root.at(tool);
    const hidden = `${path}.hidden`;
    const present = existsSync(path);
    if (present) renameSync(path, hidden);
    try {
      return fn();
    } finally {
      if (present) renameSync(hidden, path);
    }
  }

  before(() => {
    root = TestRoot.create();
    const parent = root.at('bundle');
    mkdirSync(parent);
    const bundle = assembleLinuxBundleFolder(parent, { agent: installedAgent, agentToml: bundleAgentToml('/var/lib/ct-ops/agent', publicKeyFile(releaseKey, 'CT-Ops test release key')), caCert: '-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n' }, '0.2.0');
    const installed = root.run([`${bundle.slice(root.path.length)}/install.sh`, '--no-start']);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    // The helper's release key and version record, root-owned outside the agent's reach.
    for (const path of ['etc/ct-ops/release.pub', 'usr/local/libexec/ct-ops/agent.version']) {
      const stat = statSync(root.at(path));
      assert.deepEqual([(stat.mode & 0o7777).toString(8), stat.uid, stat.gid], ['644', 0, 0], path);
    }
    assert.match(readFileSync(root.at('etc/ct-ops/release.pub'), 'utf8'), new RegExp(publicKeyFile(releaseKey).split('\n')[1]!.replace(/[+/]/g, '\\$&')));
    writeFileSync(root.at('usr/bin/systemctl'), STEADY_SYSTEMCTL);
    chmodSync(root.at('usr/bin/systemctl'), 0o755);
    root.addHostTool('/usr/bin/openssl');
  });
  after(() => root?.dispose());
  beforeEach(() => {
    root.run(['/bin/sh', '-c', `rm -rf ${SPOOL}/* ${SPOOL}/.[!.]*`]);
  });

  test('issue 8 replayed: a program the agent account stages with a matching sha256 is never installed, in the old or the new request form', async () => {
    asAgent(`cp /usr/bin/id ${SPOOL}/evil`);
    const sha = root.run(['sha256sum', `${SPOOL}/evil`]).stdout.slice(0, 64);
    ask(`update ${SPOOL}/evil ${sha}`);
    assertRefused(helper(), 'update-needs-release-file');

    // The same program dressed as a release: SHA256SUMS lists it, signed by a key the agent made.
    const forged = await release('9.9.9', { [RELEASE_FILE]: readFileSync(root.at('usr/bin/id'), 'latin1') }, { key: attackerKey });
    stage(forged);
    assertRefused(helper(), 'release-signature-invalid-signed-by-another-key');

    // A key made to carry the release key's id: only the Ed25519 check can tell.
    const sameId: SigningKey = { ...attackerKey, keyId: releaseKey.keyId };
    stage(await release('9.9.9', { [RELEASE_FILE]: standInAgent('evil') }, { key: sameId }));
    assertRefused(helper(), 'release-signature-invalid-signature-mismatch');

    // No signature at all.
    stage(forged, `update ${RELEASE_FILE}`, [RELEASE_FILE, 'SHA256SUMS']);
    assertRefused(helper(), 'staged-file-unreadable-or-link');

    // A genuine, newer release's SHA256SUMS and signature, with the program in place of its binary.
    const genuine = await release('0.9.0', { [RELEASE_FILE]: standInAgent('0.9.0') });
    asAgent(`cp ${genuine}/SHA256SUMS ${genuine}/SHA256SUMS.minisig ${SPOOL}/ && cp /usr/bin/id ${SPOOL}/${RELEASE_FILE}`);
    ask(`update ${RELEASE_FILE}`);
    assertRefused(helper(), 'sha256-mismatch');
  });

  test('a release genuinely signed by the release key is refused unless its version is newer than the installed one', async () => {
    stage(await release('0.1.9', { [RELEASE_FILE]: standInAgent('0.1.9') }));
    assertRefused(helper(), 'not-newer-than-installed-0.2.0');
    stage(await release('0.2.0', { [RELEASE_FILE]: standInAgent('0.2.0-again') }));
    assertRefused(helper(), 'not-newer-than-installed-0.2.0');
  });

  test('a release for another OS or CPU is refused, whatever name it is staged under', async () => {
    const other = `ct-ops-agent-linux-${OTHER_ARCH}`;
    const dir = await release('0.3.0', { [other]: standInAgent('other-arch'), 'ct-ops-agent-darwin-arm64': standInAgent('mac') });
    stage(dir, `update ${other}`, [other, 'SHA256SUMS', 'SHA256SUMS.minisig']);
    assertRefused(helper(), 'wrong-target');
    stage(dir, 'update ct-ops-agent-darwin-arm64', ['ct-ops-agent-darwin-arm64', 'SHA256SUMS', 'SHA256SUMS.minisig']);
    assertRefused(helper(), 'wrong-target');
    // The other CPU's file renamed to this host's name: SHA256SUMS does not list that name.
    asAgent(`cp ${dir}/${other} ${SPOOL}/${RELEASE_FILE}`);
    stage(dir, `update ${RELEASE_FILE}`, ['SHA256SUMS', 'SHA256SUMS.minisig']);
    assertRefused(helper(), 'not-in-release');
  });

  test('links and FIFOs in the spool are never followed nor waited on', async () => {
    const dir = await release('0.3.0', { [RELEASE_FILE]: standInAgent('0.3.0') });
    // Links to a genuine, valid release: followed, they would install it.
    asAgent(`ln -s ${dir}/SHA256SUMS ${SPOOL}/SHA256SUMS && cp ${dir}/SHA256SUMS.minisig ${dir}/${RELEASE_FILE} ${SPOOL}/`);
    ask(`update ${RELEASE_FILE}`);
    assertRefused(helper(), 'staged-file-unreadable-or-link');
    asAgent(`cp ${dir}/SHA256SUMS ${dir}/SHA256SUMS.minisig ${SPOOL}/ && ln -s ${dir}/${RELEASE_FILE} ${SPOOL}/${RELEASE_FILE}`);
    ask(`update ${RELEASE_FILE}`);
    assertRefused(helper(), 'staged-file-unreadable-or-link');
    // A FIFO nobody writes to: a blocking open would hang the helper forever.
    asAgent(`cp ${dir}/SHA256SUMS ${dir}/SHA256SUMS.minisig ${SPOOL}/ && mkfifo ${SPOOL}/${RELEASE_FILE}`);
    ask(`update ${RELEASE_FILE}`);
    const started = Date.now();
    assertRefused(helper(), 'staged-file-unreadable-or-link');
    assert.ok(Date.now() - started < 30_000);
    // The request itself as a link to a valid request elsewhere.
    asAgent(`cp ${dir}/* ${SPOOL}/ && printf 'update ${RELEASE_FILE}\\n' >/tmp/request && ln -s /tmp/request ${SPOOL}/request`);
    const linked = helper();
    assert.equal(linked.code, 1);
    assert.equal(resultFile(), 'request refused not-a-regular-file');
    assert.equal(installedBinary(), installedAgent);
    // The answer's name taken in advance: a link to a root-only file is replaced, never written
    // through; a directory is replaced too, so the agent still gets its answer.
    const shadow = readFileSync(root.at('etc/shadow'), 'utf8');
    asAgent(`rm -f ${SPOOL}/result && ln -s /etc/shadow ${SPOOL}/result`);
    ask('update');
    assertRefused(helper(), 'update-needs-release-file');
    assert.equal(readFileSync(root.at('etc/shadow'), 'utf8'), shadow);
    asAgent(`rm -f ${SPOOL}/result && mkdir ${SPOOL}/result && touch ${SPOOL}/result/x`);
    ask('update');
    assertRefused(helper(), 'update-needs-release-file');
  });

  test('the answer cannot be redirected: "result" re-planted as a link to a folder while the helper answers never makes root write there', async () => {
    // The agent's account in a tight loop: whenever root removes "result", plant it again as a link to /etc.
    const loop = spawn('chroot', ['--userspec=ct-ops:ct-ops', root.path, '/usr/bin/perl', '-e',
      `my $t = time; while (time - $t < 60) { symlink("/etc", "${SPOOL}/result"); if (!-e "${SPOOL}/request") { open(my $f, ">", "${SPOOL}/.r"); print $f "bogus\\n"; close $f; rename("${SPOOL}/.r", "${SPOOL}/request"); } }`], { stdio: 'ignore' });
    try {
      for (let run = 0; run < 20; run += 1) helper();
    } finally {
      loop.kill();
    }
    assert.deepEqual(readdirSync(root.at('etc')).filter((name) => name.startsWith('result')), [], 'root wrote no answer into /etc');
  });

  test('a genuine signature whose trusted comment was edited to claim a newer version is refused (the global signature covers it)', async () => {
    const dir = await release('0.1.0', { [RELEASE_FILE]: standInAgent('0.1.0') });
    const signature = readFileSync(root.at(`${dir}/SHA256SUMS.minisig`), 'utf8').split('\n');
    signature[2] = signature[2]!.replace('ct-ops-agent 0.1.0 executables', 'ct-ops-agent 9.0.0 executables');
    writeFileSync(root.at(`${dir}/SHA256SUMS.minisig`), signature.join('\n'));
    stage(dir);
    assertRefused(helper(), 'release-signature-invalid-trusted-comment-altered');
  });

  test('a newer release signed by the release key is installed, with openssl or with minisign, and never without a verifier', async () => {
    stage(await release('0.3.0', { [RELEASE_FILE]: standInAgent('0.3.0') }));
    const viaOpenssl = helper();
    assert.equal(viaOpenssl.code, 0, viaOpenssl.stdout + viaOpenssl.stderr);
    assert.equal(resultFile(), 'update ok 0.3.0');
    assert.equal(installedBinary(), standInAgent('0.3.0'));
    assert.equal(installedVersion(), '0.3.0');
    assert.equal(readFileSync(root.at('usr/local/libexec/ct-ops/ct-ops-agent.previous'), 'utf8'), installedAgent);
    for (const name of [RELEASE_FILE, 'SHA256SUMS', 'SHA256SUMS.minisig']) assert.ok(!existsSync(root.at(`${SPOOL}/${name}`)), `${name} consumed`);

    root.addHostTool('/usr/bin/minisign');
    try {
      const dir = await release('0.4.0', { [RELEASE_FILE]: standInAgent('0.4.0') });
      stage(dir);
      const viaMinisign = without('usr/bin/openssl', helper);
      assert.equal(viaMinisign.code, 0, viaMinisign.stdout + viaMinisign.stderr);
      assert.equal(resultFile(), 'update ok 0.4.0');
      assert.equal(installedVersion(), '0.4.0');
    } finally {
      rmSync(root.at('usr/bin/minisign'));
    }
    stage(await release('0.5.0', { [RELEASE_FILE]: standInAgent('0.5.0') }));
    const noVerifier = without('usr/bin/openssl', helper);
    assert.equal(noVerifier.code, 1);
    assert.equal(resultFile(), 'update refused release-signature-invalid-no-verifier');
    assert.equal(installedVersion(), '0.4.0');
    // Put the first install back for the tests that follow.
    writeFileSync(root.at('usr/local/bin/ct-ops-agent'), installedAgent);
    writeFileSync(root.at('usr/local/libexec/ct-ops/agent.version'), '0.2.0\n');
  });

  test('a signed newer release whose agent does not stay up is rolled back, and the installed version record stays', async () => {
    writeFileSync(root.at('usr/bin/systemctl'), CRASHING_SYSTEMCTL);
    try {
      stage(await release('0.6.0', { [RELEASE_FILE]: standInAgent('0.6.0-crashing') }));
      const result = helper();
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.equal(resultFile(), 'update rolled-back new-binary-did-not-stay-up');
      assert.equal(installedBinary(), installedAgent);
      assert.equal(installedVersion(), '0.2.0');
    } finally {
      writeFileSync(root.at('usr/bin/systemctl'), STEADY_SYSTEMCTL);
    }
  });

  test('a signed newer release whose agent starts but never opens a heartbeat stream is rolled back, with that reason', async () => {
    writeFileSync(root.at('usr/bin/systemctl'), SILENT_SYSTEMCTL);
    try {
      stage(await release('0.7.0', { [RELEASE_FILE]: standInAgent('0.7.0-silent') }));
      const result = helper();
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.equal(resultFile(), 'update rolled-back new-agent-never-streamed');
      assert.equal(installedBinary(), installedAgent);
      assert.equal(installedVersion(), '0.2.0');
    } finally {
      writeFileSync(root.at('usr/bin/systemctl'), STEADY_SYSTEMCTL);
    }
  });

  test('uninstall tsk_x after an attempted escalation: the report runs as ct-ops from a root copy of the installed binary', async () => {
    const account = root.account('ct-ops')!;
    // The agent account plants its own program wherever it can write before asking.
    asAgent(`cp /usr/bin/id ${SPOOL}/ct-ops-agent && cp /usr/bin/id /var/lib/ct-ops/agent/ct-ops-agent`);
    ask('uninstall tsk_x');
    const result = helper();
    assert.equal(result.code, 0, result.stdout + result.stderr);
    await waitFor('the detached uninstaller to finish', () => /CT-Ops agent removed/.test(readFileSync(root.at('var/log/ct-ops-uninstall.log'), 'utf8')), 60_000);
    const log = readFileSync(root.at('var/log/ct-ops-uninstall.log'), 'utf8');
    await waitFor('the report to run', () => existsSync(root.at('tmp/report-run.txt')), 30_000);
    const seen = readFileSync(root.at('tmp/report-run.txt'), 'utf8').trim();
    assert.match(seen, new RegExp(`^uid ${account.uid} gid ${account.gid} groups ${account.gid} exe /var/lib/ct-ops-report\\.[A-Za-z0-9]{8}/ct-ops-agent label 0\\.2\\.0-installed$`), `${seen}\n${log}`);
    assert.ok(!existsSync(root.at('usr/local/bin/ct-ops-agent')));
    assert.equal(root.account('ct-ops'), undefined);
  });
});

