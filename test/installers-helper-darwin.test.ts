import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { appendFileSync, chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, beforeEach, describe, test } from 'node:test';
import { publicKeyFile, signingKeyFromSeed } from '../common/minisign.ts';
import { writeReleaseFiles } from '../scripts/agents/release-files.mjs';
import { bundleAgentToml, chrootUnavailable, TestRoot, writeSha256Sums } from './helpers/chroot.ts';
import { REPO_ROOT } from './helpers/processes.ts';
import { waitFor } from './helpers/wait.ts';

/*
 * Issue 12: the root helper's macOS branches (installers/ct-ops-agent-helper.sh with `uname -s` = Darwin),
 * which no Mac runs in this suite. The REAL helper runs as root in a throwaway Debian root (test/helpers/chroot.ts)
 * made to answer like a Mac for every call the helper's Darwin path makes. The macOS layout is made by the REAL
 * install.sh's Darwin branch (--no-start) from a darwin bundle folder, so the helper's paths are checked against
 * the installer's and against the installed launchd/*.plist, not against copies of them in this file.
 *
 * Stand-ins (all inside the root, where the helper's PATH=/usr/sbin:/usr/bin:/sbin:/bin finds them):
 *  - /usr/bin/uname answers -s with "Darwin" and -m with "arm64" (Apple silicon) or "x86_64" (Intel), as macOS's does.
 *  - /bin/launchctl plays launchd for the system-domain daemon com.ct-ops.agent. `bootstrap system <plist>` loads the
 *    installed /Library/LaunchDaemons/com.ct-ops.agent.plist: it reads Label, ProgramArguments and StandardOutPath
 *    from it and, as RunAtLoad is true, spawns the job. The job runs as launchd runs it: in a session of its own,
 *    restarted after a non-zero exit (KeepAlive { SuccessfulExit = false }) no sooner than ThrottleInterval after its
 *    previous spawn (the plist's 60 s scaled down to 1 s), left down after a clean exit. The two calls the helper
 *    relies on behave as launchctl(1) documents them: `kickstart -k system/<label>` kills the running instance
 *    (SIGTERM to its process group, SIGKILL after ExitTimeOut, scaled from 20 s to 5 s), waits for it to go and
 *    starts the service again from its plist's ProgramArguments, so the binary at that path at that moment runs;
 *    it returns once the new instance was spawned, and fails with launchctl's "Could not find service" (exit 113)
 *    when the service is not loaded. `print system/<label>` prints the service's block, whose tab-indented
 *    `pid = N` line is there only while an instance runs (`state = running`), as in print output seen on Macs;
 *    launchctl(1) itself warns that print's output is not API, so the helper's awk rests on observed output.
 *    It tells exited processes from running ones through the root's /proc (mounted for it; the helper never reads it).
 *  - The "agent" is a shell script per release that logs "<pid> <label> <argv>" on every start and, like the agent
 *    (agent/update/updater.ts), writes its version into <spool>/streaming a moment after starting when it is a freshly
 *    installed release; the installed 0.2.0 one never does, as a real agent without a pending update record does not.
 *  - macOS's userland where the helper's Darwin path could differ from Linux's: /bin/mv takes only BSD mv's options
 *    (-f -i -n -h -v; anything else is refused with exit 64) and does BSD's -h (a target that is a symbolic link is
 *    replaced, not followed) with GNU mv -T; there is no sha256sum (the helper and install.sh fall back to the real
 *    Perl `shasum -a 256`, copied from this Debian host with its Digest::SHA), no flock, timeout, setsid, systemctl
 *    or systemd-run; minisign sits in /usr/local/bin (Homebrew's prefix on Intel Macs) and there is no openssl, as
 *    macOS's LibreSSL openssl cannot do install.sh's Ed25519 check (no `pkeyutl -rawin`).
 *
 * Executed: the helper's Darwin paths (SPOOL/WORK under "/Library/Application Support/CT-Ops", mv -fh answers,
 * cp out of the spool, shasum, launchctl kickstart -k and print) for a good update, a new binary that never
 * streams (crashing at once, or running silent), one that streams and then dies (a new PID within the settle
 * period), launchctl failing to start the service, and the arm64 / x86_64 release names.
 *
 * NOT executed (read only, or not at all): real launchd and launchctl (process spawning, exit and throttle timing,
 * whether kickstart bypasses ThrottleInterval, how kickstart reports a binary it cannot exec at all), WatchPaths
 * triggering the helper daemon (the helper is run by hand, with the plist's ProgramArguments), AbandonProcessGroup,
 * macOS code signing, Gatekeeper, quarantine, SIP and TCC for a swapped binary, APFS, /bin/sh being bash 3.2 in
 * POSIX mode (dash runs it here), the BSD versions of cp, rm, mktemp, chmod, chown, sed, awk, grep, head, tail, wc,
 * cut, od, base64 and sleep (GNU ones run; the options used are ones the BSD manual pages document, read only;
 * install.sh's `base64 -d` is the one to try on an older macOS), a Mac whose minisign is not in /usr/local/bin
 * (Apple silicon Homebrew's /opt/homebrew/bin is not on install.sh's PATH, so every update would be refused as
 * release-signature-invalid-no-verifier), the real agent, and the helper's `uninstall` verb on macOS.
 */

const MACHINES = { arm64: 'arm64', x86_64: 'x64' } as const;
type Machine = keyof typeof MACHINES;
const SUPPORT = '/Library/Application Support/CT-Ops';
const SPOOL = `${SUPPORT}/requests`;
const AGENT_BIN = '/usr/local/bin/ct-ops-agent';
const LIBEXEC = '/usr/local/libexec/ct-ops';
const AGENT_PLIST = '/Library/LaunchDaemons/com.ct-ops.agent.plist';
const HELPER_PLIST = '/Library/LaunchDaemons/com.ct-ops.agent-helper.plist';
const SERVICE = 'system/com.ct-ops.agent';
const STARTS_LOG = '/var/log/standin-agent-starts';
const LAUNCHD_STATE = '/var/lib/launchd-standin';

const unameStandIn = (machine: Machine): string => `#!/bin/sh
# Stand-in for macOS's /usr/bin/uname (test/installers-helper-darwin.test.ts).
case \${1-} in
  '' | -s) echo Darwin ;;
  -m) echo ${machine} ;;
  *) echo "uname (stand-in): only -s and -m are answered, not $*" >&2; exit 1 ;;
esac
`;

const BSD_MV = `#!/bin/sh
# Stand-in for macOS's /bin/mv (test/installers-helper-darwin.test.ts): BSD mv's options only,
#   mv [-f | -i | -n] [-hv] source target;  mv [-f | -i | -n] [-v] source ... directory
# GNU-only options (-T, -t, -u, --long ones) are refused as macOS refuses them. BSD's -h (a target that is a
# symbolic link is replaced itself, never followed into the folder it names) is GNU mv -T for such a target.
gnu=/usr/libexec/gnu-coreutils/mv
options=
keep_link=
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    -?*)
      letters=\${1#-}
      while [ -n "$letters" ]; do
        letter=\${letters%"\${letters#?}"}
        letters=\${letters#?}
        case $letter in
          f | i | n | v) options="$options -$letter" ;;
          h) keep_link=1 ;;
          *) printf 'mv: illegal option -- %s\\nusage: mv [-f | -i | -n] [-hv] source target\\n' "$letter" >&2; exit 64 ;;
        esac
      done
      shift ;;
    *) break ;;
  esac
done
if [ -n "$keep_link" ] && [ $# -eq 2 ] && [ -L "$2" ]; then
  exec "$gnu" $options -T -- "$1" "$2"
fi
exec "$gnu" $options -- "$@"
`;

const LAUNCHCTL = `#!/bin/sh
# Stand-in for macOS's /bin/launchctl (test/installers-helper-darwin.test.ts): bootstrap, bootout, kickstart [-k]
# and print for system-domain launch daemons, with launchd's handling of the job's processes.
set -u
STATE=${LAUNCHD_STATE}
SUPERVISE=/usr/libexec/launchd-standin/supervise
SETSID=/usr/libexec/launchd-standin/setsid
job_dir() {
  case \${1-} in
    system/?*) printf '%s/%s\\n' "$STATE" "\${1#system/}" ;;
    *) echo "Unrecognized target specifier: \${1-}" >&2; return 64 ;;
  esac
}
require_loaded() { [ -d "$1" ] || { printf 'Could not find service "%s" in domain for system\\n' "\${2#system/}" >&2; exit 113; }; }
# alive PID: a process that has not exited. launchd reaps its jobs at once; here an exited job waits for this
# machine's init to reap it, so a zombie (state Z in /proc) counts as gone.
alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(sed 's/.*) //;s/ .*//' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
plist_string() { sed -n "/<key>$2<\\/key>/{n;s/.*<string>\\(.*\\)<\\/string>.*/\\1/p;}" "$1"; }
# stop DIR: SIGTERM to the job's process group, SIGKILL after ExitTimeOut (20 s in the plist, 5 s here); waits.
stop() {
  leader=$(cat "$1/supervisor" 2>/dev/null || true)
  agent=$(cat "$1/pid" 2>/dev/null || true)
  if alive "$leader"; then
    kill -TERM -"$leader" 2>/dev/null || true
    n=0
    while { alive "$leader" || alive "$agent"; } && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
    if alive "$leader" || alive "$agent"; then kill -KILL -"$leader" 2>/dev/null || true; sleep 0.2; fi
  fi
  rm -f "$1/pid" "$1/supervisor"
}
# start DIR: spawns the job in a session of its own; returns once it was spawned.
start() {
  runs=$(cat "$1/runs")
  "$SETSID" "$SUPERVISE" "$1" </dev/null >/dev/null 2>&1 &
  n=0
  while [ "$(cat "$1/runs")" = "$runs" ] && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
}
case \${1-} in
  bootstrap)
    [ "\${2-}" = system ] && [ -f "\${3-}" ] || { echo 'Usage: launchctl bootstrap system <plist>' >&2; exit 64; }
    dir=$STATE/$(plist_string "$3" Label)
    [ ! -d "$dir" ] || { echo 'Bootstrap failed: 5: Input/output error' >&2; exit 5; }
    mkdir -p "$dir"
    sed -n '/<key>ProgramArguments<\\/key>/,/<\\/array>/s/.*<string>\\(.*\\)<\\/string>.*/\\1/p' "$3" >"$dir/args"
    plist_string "$3" StandardOutPath >"$dir/stdout"
    printf '%s\\n' "$3" >"$dir/path"
    echo 0 >"$dir/runs"
    if grep -A 1 '<key>RunAtLoad</key>' "$3" | grep -q '<true/>'; then start "$dir"; fi
    ;;
  bootout)
    dir=$(job_dir "\${2-}") || exit 64
    require_loaded "$dir" "$2"
    stop "$dir"
    rm -rf "$dir"
    ;;
  kickstart)
    kill_first=0
    if [ "\${2-}" = -k ]; then kill_first=1; shift; fi
    dir=$(job_dir "\${2-}") || exit 64
    require_loaded "$dir" "$2"
    if alive "$(cat "$dir/pid" 2>/dev/null || true)" && [ "$kill_first" = 0 ]; then exit 0; fi
    stop "$dir"
    start "$dir"
    ;;
  print)
    dir=$(job_dir "\${2-}") || exit 64
    require_loaded "$dir" "$2"
    pid=$(cat "$dir/pid" 2>/dev/null || true)
    alive "$pid" || pid=
    printf '%s = {\\n' "$2"
    if [ -n "$pid" ]; then printf '\\tactive count = 1\\n'; else printf '\\tactive count = 0\\n'; fi
    printf '\\tpath = %s\\n\\ttype = LaunchDaemon\\n' "$(cat "$dir/path")"
    if [ -n "$pid" ]; then printf '\\tstate = running\\n\\n'; else printf '\\tstate = not running\\n\\n'; fi
    printf '\\tprogram = %s\\n\\targuments = {\\n' "$(head -n 1 "$dir/args")"
    sed 's/^/\\t\\t/' "$dir/args"
    printf '\\t}\\n\\n\\tstdout path = %s\\n\\truns = %s\\n' "$(cat "$dir/stdout")" "$(cat "$dir/runs")"
    if [ -n "$pid" ]; then printf '\\tpid = %s\\n' "$pid"; fi
    printf '\\tlast exit code = %s\\n}\\n' "$(cat "$dir/last-exit" 2>/dev/null || echo '(never exited)')"
    ;;
  *) echo "Unrecognized subcommand: \${1-}" >&2; exit 64 ;;
esac
`;

/** launchd's side of one loaded job: spawn, KeepAlive { SuccessfulExit = false }, ThrottleInterval (1 s here). */
const SUPERVISE = `#!/bin/sh
dir=$1
printf '%s\\n' "$$" >"$dir/supervisor"
out=$(cat "$dir/stdout")
set --
while IFS= read -r arg; do set -- "$@" "$arg"; done <"$dir/args"
while :; do
  spawned=$(date +%s)
  "$@" </dev/null >>"$out" 2>&1 &
  printf '%s\\n' "$!" >"$dir/pid.new" && mv -f "$dir/pid.new" "$dir/pid"
  printf '%s\\n' "$(($(cat "$dir/runs") + 1))" >"$dir/runs.new" && mv -f "$dir/runs.new" "$dir/runs"
  wait "$!"
  code=$?
  rm -f "$dir/pid"
  printf '%s\\n' "$code" >"$dir/last-exit"
  [ "$code" -ne 0 ] || exit 0
  [ $(($(date +%s) - spawned)) -ge 1 ] || sleep 1
done
`;

/** A stand-in agent executable: logs each start, then behaves as `behaviour` says. */
const standInAgent = (label: string, behaviour: string): string => `#!/bin/sh
# stand-in agent ${label}
printf '%s %s %s\\n' "$$" '${label}' "$0 $*" >>${STARTS_LOG}
${behaviour}
`;
/** What a freshly installed release does after its first acknowledged heartbeat (agent/update/updater.ts). */
const streamsAs = (version: string): string => `sleep 1\nprintf '%s\\n' '${version}' >"${SPOOL}/streaming"\n`;
const STAYS_UP = 'exec sleep 86400\n';
const INSTALLED_AGENT = standInAgent('0.2.0-installed', STAYS_UP);

/** Lays out an extracted darwin bundle folder in `parent` per docs/bundle-format.md; returns its path. */
function assembleDarwinBundleFolder(parent: string, machine: Machine, releasePublicKey: string): string {
  const target = `darwin-${MACHINES[machine]}`;
  const dir = join(parent, `ct-ops-agent-0.2.0-${target}`);
  mkdirSync(dir, { recursive: true });
  const files: Record<string, string> = {
    'ct-ops-agent': INSTALLED_AGENT,
    'agent.toml': bundleAgentToml(`${SUPPORT}/agent`, releasePublicKey),
    'ca.crt': '-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n',
    TARGET: `${target}\n`,
    'README.md': '# CT-Ops agent bundle (test)\n',
    'manifest.json': `${JSON.stringify({ format: 1, os: 'darwin', arch: MACHINES[machine], agent_version: '0.2.0' }, null, 2)}\n`,
  };
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: name === 'ct-ops-agent' ? 0o755 : 0o644 });
  for (const [name, source] of Object.entries({
    'install.sh': 'installers/install.sh',
    'uninstall.sh': 'installers/uninstall.sh',
    'ct-ops-agent-helper.sh': 'installers/ct-ops-agent-helper.sh',
    'com.ct-ops.agent.plist': 'launchd/com.ct-ops.agent.plist',
    'com.ct-ops.agent-helper.plist': 'launchd/com.ct-ops.agent-helper.plist',
  })) {
    copyFileSync(join(REPO_ROOT, source), join(dir, name));
    chmodSync(join(dir, name), name.endsWith('.sh') ? 0o755 : 0o644);
  }
  writeSha256Sums(dir);
  return dir;
}

/** The <string> items of a plist key's <array>. */
function plistArray(text: string, key: string): string[] {
  const array = new RegExp(`<key>${key}</key>\\s*<array>([\\s\\S]*?)</array>`).exec(text)?.[1];
  assert.ok(array !== undefined, `plist has no ${key} array`);
  return [...array.matchAll(/<string>([^<]*)<\/string>/g)].map((match) => match[1]!);
}

describe('the root helper on macOS (Darwin stand-ins for uname, launchctl and the BSD userland)', { skip: chrootUnavailable(), timeout: 5 * 60_000 }, () => {
  const releaseKey = signingKeyFromSeed(randomBytes(32));
  let root: TestRoot;
  let helperCommand: string[];
  let releases = 0;

  const launchctl = (...args: string[]) => root.run(['/bin/launchctl', ...args]);
  const setMachine = (machine: Machine): void => writeFileSync(root.at('usr/bin/uname'), unameStandIn(machine), { mode: 0o755 });
  const resultFile = (): string => readFileSync(root.at(`${SPOOL}/result`), 'utf8').trim();
  const installedBinary = (): string => readFileSync(root.at(AGENT_BIN), 'utf8');
  const installedVersion = (): string => readFileSync(root.at(`${LIBEXEC}/agent.version`), 'utf8').trim();
  /** The running agent's PID as `launchctl print` reports it, or undefined. */
  const runningPid = (): number | undefined => {
    const printed = launchctl('print', SERVICE);
    assert.equal(printed.code, 0, printed.stderr);
    const pid = /^\tpid = (\d+)$/m.exec(printed.stdout)?.[1];
    return pid === undefined ? undefined : Number(pid);
  };
  /** Every start of a stand-in agent: pid, label, argv. */
  const starts = (): { pid: number; label: string; argv: string }[] =>
    (existsSync(root.at(STARTS_LOG)) ? readFileSync(root.at(STARTS_LOG), 'utf8') : '').split('\n').filter(Boolean).map((line) => {
      const [pid, label, ...argv] = line.split(' ');
      return { pid: Number(pid), label: label!, argv: argv.join(' ') };
    });
  /** Waits until launchd runs an instance of the agent labelled `label`; returns its PID. */
  const runningAgent = (label: string): Promise<number> =>
    waitFor(`the running agent to be ${label}`, () => {
      const pid = runningPid();
      return pid !== undefined && starts().some((start) => start.pid === pid && start.label === label) && pid;
    }, 10_000);
  /** True while the process has not exited (a zombie waiting for init to reap it has). */
  const isAlive = (pid: number): boolean => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0] !== 'Z';
    } catch {
      return false;
    }
  };

  /** Runs the helper as its launch daemon does (the plist's ProgramArguments), with short health-gate times. */
  function helper(times: { streamWithin: number; settle: number }) {
    const started = Date.now();
    const ran = root.run(helperCommand, { env: { CT_OPS_UPDATE_STREAM_WITHIN_SECS: String(times.streamWithin), CT_OPS_UPDATE_SETTLE_SECS: String(times.settle) }, timeoutMs: 60_000 });
    return { ...ran, seconds: (Date.now() - started) / 1000 };
  }
  /** A release directory inside the root, signed by the release key like a real release; returns its host path. */
  async function release(version: string, files: Record<string, string>): Promise<string> {
    releases += 1;
    const dir = root.at(`releases/r${releases}`);
    mkdirSync(dir, { recursive: true });
    for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content, { mode: 0o755 });
    await writeReleaseFiles({ dir, files: Object.keys(files), key: releaseKey, version, keyLabel: 'test' });
    return dir;
  }
  /** The agent (root on macOS) copies the release's files into the spool and asks, renaming its request into place. */
  function stage(dir: string, releaseFile: string, binaryFrom = releaseFile): void {
    for (const name of ['SHA256SUMS', 'SHA256SUMS.minisig']) copyFileSync(join(dir, name), root.at(`${SPOOL}/${name}`));
    copyFileSync(join(dir, binaryFrom), root.at(`${SPOOL}/${releaseFile}`));
    writeFileSync(root.at(`${SPOOL}/.request.incoming`), `update ${releaseFile}\n`);
    renameSync(root.at(`${SPOOL}/.request.incoming`), root.at(`${SPOOL}/request`));
  }
  function assertRolledBack(ran: ReturnType<typeof helper>, why: string): void {
    assert.equal(ran.code, 2, ran.stdout + ran.stderr);
    assert.equal(resultFile(), `update rolled-back ${why}`);
    assert.equal(installedBinary(), INSTALLED_AGENT, `${AGENT_BIN} is the previous binary again`);
    assert.equal(installedVersion(), '0.2.0');
  }
  function assertRefused(ran: ReturnType<typeof helper>, reason: string, agentPid: number): void {
    assert.equal(ran.code, 1, ran.stdout + ran.stderr);
    assert.equal(resultFile(), `update refused ${reason}`);
    assert.equal(installedBinary(), INSTALLED_AGENT);
    assert.equal(installedVersion(), '0.2.0');
    assert.equal(runningPid(), agentPid, 'the agent was not restarted');
  }

  before(() => {
    root = TestRoot.create();
    // For the launchd stand-in only (it tells exited jobs from running ones); the helper never reads /proc.
    root.mountProc();
    // macOS's userland where it matters to the helper (see the comment at the top).
    setMachine('arm64');
    mkdirSync(root.at('usr/libexec/gnu-coreutils'), { recursive: true });
    renameSync(root.at('usr/bin/mv'), root.at('usr/libexec/gnu-coreutils/mv'));
    writeFileSync(root.at('usr/bin/mv'), BSD_MV, { mode: 0o755 });
    mkdirSync(root.at('usr/libexec/launchd-standin'), { recursive: true });
    renameSync(root.at('usr/bin/setsid'), root.at('usr/libexec/launchd-standin/setsid'));
    writeFileSync(root.at('usr/libexec/launchd-standin/supervise'), SUPERVISE, { mode: 0o755 });
    writeFileSync(root.at('usr/bin/launchctl'), LAUNCHCTL, { mode: 0o755 });
    for (const tool of ['sha256sum', 'flock', 'timeout', 'systemctl', 'systemd-run']) rmSync(root.at(`usr/bin/${tool}`));
    // The real Perl shasum macOS ships, with its Digest::SHA (this host's Debian has the root's perl).
    const [shaModule, shaLibrary] = execFileSync('perl', ['-MDigest::SHA', '-e', 'print join "\\n", $INC{"Digest/SHA.pm"}, grep { -e } map { "$_/auto/Digest/SHA/SHA.so" } @INC'], { encoding: 'utf8' }).split('\n');
    for (const path of ['/usr/bin/shasum', shaModule!, shaLibrary!]) {
      mkdirSync(dirname(root.at(path)), { recursive: true });
      copyFileSync(path, root.at(path));
    }
    root.addHostTool('/usr/bin/minisign');
    renameSync(root.at('usr/bin/minisign'), root.at('usr/local/bin/minisign'));
    assert.ok(!existsSync(root.at('usr/bin/openssl')), 'the root has no openssl');
    const shasum = root.run(['shasum', '-a', '256', '--', '/etc/passwd']);
    assert.equal(shasum.stdout.split(' ')[0], createHash('sha256').update(readFileSync(root.at('etc/passwd'))).digest('hex'), `shasum runs in the root: ${shasum.stderr}`);
    // macOS's group 0 is wheel (install.sh makes its files root:wheel), and every Mac has these folders.
    appendFileSync(root.at('etc/group'), 'wheel:x:0:root\n');
    for (const folder of ['Library/LaunchDaemons', 'Library/Application Support']) mkdirSync(root.at(folder), { recursive: true, mode: 0o755 });

    const parent = root.at('bundle');
    mkdirSync(parent);
    const bundle = assembleDarwinBundleFolder(parent, 'arm64', publicKeyFile(releaseKey, 'CT-Ops test release key'));
    const installed = root.run([`${bundle.slice(root.path.length)}/install.sh`, '--no-start']);
    assert.equal(installed.code, 0, installed.stdout + installed.stderr);
    assert.match(installed.stdout, /launch daemons installed but not loaded/);
    for (const [path, mode] of [[`${SUPPORT}/requests`, '700'], [`${SUPPORT}/helper`, '700'], [AGENT_BIN, '755'], [`${LIBEXEC}/agent.version`, '644'], ['/etc/ct-ops/release.pub', '644'], [AGENT_PLIST, '644'], [HELPER_PLIST, '644']] as const) {
      const stat = statSync(root.at(path));
      assert.deepEqual([(stat.mode & 0o7777).toString(8), stat.uid, stat.gid], [mode, 0, 0], path);
    }
    // The helper runs as its daemon starts it, watching the spool the helper reads; the agent daemon runs the binary the helper swaps.
    const helperPlist = readFileSync(root.at(HELPER_PLIST), 'utf8');
    assert.deepEqual(plistArray(helperPlist, 'WatchPaths'), [SPOOL]);
    helperCommand = plistArray(helperPlist, 'ProgramArguments');
    assert.deepEqual(helperCommand, ['/bin/sh', `${LIBEXEC}/ct-ops-agent-helper.sh`]);
    assert.equal(plistArray(readFileSync(root.at(AGENT_PLIST), 'utf8'), 'ProgramArguments')[0], AGENT_BIN);
    // What install.sh would do without --no-start: load the daemon (RunAtLoad starts the agent).
    const loaded = launchctl('bootstrap', 'system', AGENT_PLIST);
    assert.equal(loaded.code, 0, loaded.stderr);
  });
  after(() => {
    if (!root) return;
    launchctl('bootout', SERVICE);
    // Backstop: whatever launchd stand-in session is still there (by its recorded leader PID only).
    const leaderFile = root.at(`${LAUNCHD_STATE}/com.ct-ops.agent/supervisor`);
    if (existsSync(leaderFile)) {
      try {
        process.kill(-Number(readFileSync(leaderFile, 'utf8')), 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    root.dispose();
  });
  beforeEach(() => {
    // The installed 0.2.0 agent, running, and an empty spool. Stopped before its file is replaced, replaced by rename.
    if (existsSync(root.at(`${LAUNCHD_STATE}/com.ct-ops.agent`))) assert.equal(launchctl('bootout', SERVICE).code, 0);
    writeFileSync(root.at(`${AGENT_BIN}.reset`), INSTALLED_AGENT, { mode: 0o755 });
    renameSync(root.at(`${AGENT_BIN}.reset`), root.at(AGENT_BIN));
    writeFileSync(root.at(`${LIBEXEC}/agent.version`), '0.2.0\n');
    rmSync(root.at(`${LIBEXEC}/ct-ops-agent.previous`), { force: true });
    root.run(['/bin/sh', '-c', `rm -rf "${SPOOL}"/* "${SPOOL}"/.[!.]*`]);
    assert.equal(launchctl('bootstrap', 'system', AGENT_PLIST).code, 0);
  });

  test('a good update on an Apple silicon Mac swaps /usr/local/bin/ct-ops-agent, keeps the previous binary, restarts the agent through launchctl and answers "update ok"', async (t) => {
    const oldPid = await runningAgent('0.2.0-installed');
    const newAgent = standInAgent('0.3.0', streamsAs('0.3.0') + STAYS_UP);
    stage(await release('0.3.0', { 'ct-ops-agent-darwin-arm64': newAgent, 'ct-ops-agent-darwin-x64': standInAgent('0.3.0-intel', STAYS_UP), 'ct-ops-agent-linux-arm64': 'not for macOS\n' }), 'ct-ops-agent-darwin-arm64');
    const ran = helper({ streamWithin: 10, settle: 2 });
    assert.equal(ran.code, 0, ran.stdout + ran.stderr);
    assert.equal(resultFile(), 'update ok 0.3.0');
    assert.equal((statSync(root.at(`${SPOOL}/result`)).mode & 0o777).toString(8), '644');
    assert.match(ran.stdout, /^ct-ops-agent-helper: update ok: agent 0\.3\.0 streamed and stayed up for 2s$/m);
    assert.equal(installedBinary(), newAgent);
    const stat = statSync(root.at(AGENT_BIN));
    assert.deepEqual([(stat.mode & 0o7777).toString(8), stat.uid, stat.gid], ['755', 0, 0]);
    assert.equal(installedVersion(), '0.3.0');
    assert.equal(readFileSync(root.at(`${LIBEXEC}/ct-ops-agent.previous`), 'utf8'), INSTALLED_AGENT);
    for (const name of ['request', 'ct-ops-agent-darwin-arm64', 'SHA256SUMS', 'SHA256SUMS.minisig', 'streaming']) assert.ok(!existsSync(root.at(`${SPOOL}/${name}`)), `${name} consumed`);
    // kickstart -k stopped the old agent and launchd runs the new binary, from the plist's ProgramArguments.
    const newPid = await runningAgent('0.3.0');
    assert.equal(isAlive(oldPid), false, 'the 0.2.0 agent was stopped');
    assert.equal(starts().find((start) => start.pid === newPid)?.argv, `${AGENT_BIN} -config /etc/ct-ops/agent.toml`);
    t.diagnostic(`good update: helper ran ${ran.seconds.toFixed(1)} s`);
  });

  test('a new binary that never streams is rolled back as new-agent-never-streamed, whether it crashes at once or runs silent, and the previous agent runs again', async (t) => {
    for (const [version, behaviour] of [['0.4.0', "echo 'ct-ops-agent: fatal: cannot start' >&2\nexit 1\n"], ['0.4.1', STAYS_UP]] as const) {
      stage(await release(version, { 'ct-ops-agent-darwin-arm64': standInAgent(version, behaviour) }), 'ct-ops-agent-darwin-arm64');
      const ran = helper({ streamWithin: 3, settle: 2 });
      assertRolledBack(ran, 'new-agent-never-streamed');
      assert.ok(starts().some((start) => start.label === version), `launchd started ${version}`);
      await runningAgent('0.2.0-installed');
      t.diagnostic(`${version} never streamed: helper ran ${ran.seconds.toFixed(1)} s`);
    }
  });

  test('a new binary that streams and then dies within the settle period (launchd restarts it under a new PID) is rolled back as new-binary-did-not-stay-up', async (t) => {
    stage(await release('0.5.0', { 'ct-ops-agent-darwin-arm64': standInAgent('0.5.0', `${streamsAs('0.5.0')}sleep 6\nexit 1\n`) }), 'ct-ops-agent-darwin-arm64');
    const ran = helper({ streamWithin: 10, settle: 6 });
    assertRolledBack(ran, 'new-binary-did-not-stay-up');
    const crashing = starts().filter((start) => start.label === '0.5.0').map((start) => start.pid);
    assert.ok(new Set(crashing).size >= 2, `launchd restarted the dying agent under a new PID: ${crashing.join(', ')}`);
    await runningAgent('0.2.0-installed');
    t.diagnostic(`died after streaming: helper ran ${ran.seconds.toFixed(1)} s`);
  });

  test('when launchctl cannot start the service at all (not loaded) the update is rolled back as new-binary-did-not-start', async () => {
    assert.equal(launchctl('bootout', SERVICE).code, 0);
    stage(await release('0.6.0', { 'ct-ops-agent-darwin-arm64': standInAgent('0.6.0', streamsAs('0.6.0') + STAYS_UP) }), 'ct-ops-agent-darwin-arm64');
    const ran = helper({ streamWithin: 3, settle: 2 });
    assertRolledBack(ran, 'new-binary-did-not-start');
    assert.match(ran.stderr, /Could not find service "com\.ct-ops\.agent" in domain for system/);
    assert.match(ran.stdout, /restarting the previous agent failed too/);
    assert.ok(!starts().some((start) => start.label === '0.6.0'), 'the new binary never ran');
  });

  test('on an Intel Mac (uname -m x86_64) only ct-ops-agent-darwin-x64 is taken, and its SHA-256 is checked with shasum', async () => {
    const agentPid = await runningAgent('0.2.0-installed');
    setMachine('x86_64');
    try {
      const dir = await release('0.9.0', { 'ct-ops-agent-darwin-x64': standInAgent('0.9.0-intel', STAYS_UP), 'ct-ops-agent-darwin-arm64': standInAgent('0.9.0', STAYS_UP), 'ct-ops-agent-linux-x64': 'linux\n' });
      for (const name of ['ct-ops-agent-darwin-arm64', 'ct-ops-agent-linux-x64']) {
        stage(dir, name);
        assertRefused(helper({ streamWithin: 3, settle: 2 }), 'wrong-target', agentPid);
      }
      // This Mac's name, signature and version good, but other bytes: only the SHA-256 (shasum -a 256) can tell.
      stage(dir, 'ct-ops-agent-darwin-x64', 'ct-ops-agent-darwin-arm64');
      assertRefused(helper({ streamWithin: 3, settle: 2 }), 'sha256-mismatch', agentPid);
    } finally {
      setMachine('arm64');
    }
  });
});
