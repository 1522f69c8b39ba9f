import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chrootUnavailable, TestRoot } from './helpers/chroot.ts';
import { REPO_ROOT } from './helpers/processes.ts';

/*
 * Checks of the install scripts and service definitions that need no installation:
 * shellcheck, systemd-analyze verify, plist and WinSW XML parsing, and the structural rules
 * the PowerShell scripts must follow (PowerShell itself does not run on this Debian machine).
 */

const repo = (path: string): string => join(REPO_ROOT, path);
const read = (path: string): string => readFileSync(repo(path), 'utf8');
const SHELL_SCRIPTS = readdirSync(repo('installers')).filter((name) => name.endsWith('.sh')).map((name) => `installers/${name}`);
const UNITS = ['ct-ops-agent.service', 'ct-ops-agent-helper.path', 'ct-ops-agent-helper.service'];

function python(code: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync('/usr/bin/python3', ['-c', code, ...args], { encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Directives of a unit's [section] as key → values (a key may repeat). */
function directives(unitText: string, section: string): Map<string, string[]> {
  const found = new Map<string, string[]>();
  let current = '';
  for (const raw of unitText.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || line === '') continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      current = header[1]!;
      continue;
    }
    if (current !== section) continue;
    const eq = line.indexOf('=');
    const key = line.slice(0, eq);
    found.set(key, [...(found.get(key) ?? []), line.slice(eq + 1)]);
  }
  return found;
}

describe('POSIX shell scripts', () => {
  test('every installers/*.sh is shellcheck-clean as POSIX sh and starts with #!/bin/sh and set -eu', () => {
    assert.ok(SHELL_SCRIPTS.length >= 3, `scripts: ${SHELL_SCRIPTS.join(', ')}`);
    const result = spawnSync('shellcheck', ['--shell=sh', '--severity=style', ...SHELL_SCRIPTS.map(repo)], { encoding: 'utf8' });
    assert.notEqual(result.error?.message.includes('ENOENT'), true, 'shellcheck is not installed (apt-get install -y shellcheck)');
    assert.equal(result.status, 0, result.stdout + result.stderr);
    for (const script of SHELL_SCRIPTS) {
      const text = read(script);
      assert.ok(text.startsWith('#!/bin/sh\n'), `${script}: #!/bin/sh`);
      assert.match(text, /^set -eu$/m, `${script}: set -eu`);
      assert.equal(spawnSync('dash', ['-n', repo(script)]).status, 0, `${script} parses with dash`);
    }
  });

  test('no script evaluates data: no eval, no source of bundle or config files, no fixed /tmp paths, no $TMPDIR', () => {
    for (const script of SHELL_SCRIPTS) {
      const code = read(script).split('\n').filter((line) => !line.trim().startsWith('#')).join('\n');
      assert.doesNotMatch(code, /\beval\b/, `${script}: eval`);
      assert.doesNotMatch(code, /^\s*\.\s+\S/m, `${script}: sources a file`);
      assert.doesNotMatch(code, /\bsource\s/, `${script}: sources a file`);
      // A mktemp template under /tmp is a unique name (and never $TMPDIR, which root may inherit from a user).
      const fixedPaths = code.split('\n').filter((line) => !/\bmktemp\b.*\/tmp\/[\w.-]*XXXXXXXX/.test(line)).join('\n');
      assert.doesNotMatch(fixedPaths, /["'\s]\/tmp\//, `${script}: a fixed /tmp path`);
      assert.doesNotMatch(code, /\$\{?TMPDIR/, `${script}: TMPDIR`);
    }
  });

  test('install.sh, uninstall.sh and the helper write through unique temporary names only, and install.sh and uninstall.sh take the install lock', () => {
    for (const script of SHELL_SCRIPTS) {
      const code = read(script).split('\n').filter((line) => !line.trim().startsWith('#')).join('\n');
      assert.doesNotMatch(code, /\.ct-ops-new|\.tmp"/, `${script}: a fixed temporary name`);
    }
    for (const script of ['installers/install.sh', 'installers/uninstall.sh']) {
      const code = read(script);
      assert.match(code, /^\[ "\$DRY_RUN" = 1 \] \|\| take_lock$/m, `${script}: takes the lock`);
      assert.match(code, /flock -w 600 9/, `${script}: waits on flock`);
      assert.match(code, /until mkdir "\$lock\.d"/, `${script}: a lock folder without flock`);
    }
  });

  test('uninstall.sh --report-task takes only tsk_ and letters or digits, and only for a real uninstall of this machine', () => {
    const uninstall = (...args: string[]) => spawnSync('sh', [repo('installers/uninstall.sh'), ...args], { encoding: 'utf8' });
    for (const id of ['tsk_$(id)', 'tsk_', 'task_1', 'tsk_a/b', 'tsk_a b', `tsk_${'a'.repeat(65)}`]) {
      const result = uninstall('--report-task', id);
      assert.equal(result.status, 1, id);
      assert.match(result.stderr, /--report-task: not a task id/, id);
    }
    for (const extra of [['--dry-run'], ['--root', '/']]) {
      const result = uninstall('--report-task', 'tsk_0123abcd', ...extra);
      assert.equal(result.status, 1, extra.join(' '));
      assert.match(result.stderr, /--report-task is for a real uninstall of this machine/);
    }
    assert.equal(uninstall('--report-task').status, 1);
  });

  test('install.sh documents the exit codes that docs/install.md lists', () => {
    const header = read('installers/install.sh');
    const docs = read('docs/install.md');
    for (const [code, words] of [[2, 'not running as root'], [3, 'wrong platform'], [4, 'verification failed'], [5, 'tool is missing'], [6, 'install step failed']] as const) {
      assert.match(header, new RegExp(`^#\\s+${code}\\s+.*${words}`, 'm'), `install.sh header: ${code} ${words}`);
      assert.match(docs, new RegExp(`\\|\\s*${code}\\s*\\|.*${words}`, 'i'), `docs/install.md: ${code} ${words}`);
    }
  });
});

describe('systemd units', () => {
  test('the agent unit keeps the seed directives, is hardened, and does not restart on exit 77 or 78', () => {
    const service = directives(read('systemd/ct-ops-agent.service'), 'Service');
    const unit = directives(read('systemd/ct-ops-agent.service'), 'Unit');
    const expectOne = (map: Map<string, string[]>, key: string, value: string): void => assert.deepEqual(map.get(key), [value], key);
    expectOne(unit, 'Description', 'CT-Ops Agent');
    expectOne(unit, 'After', 'network-online.target');
    expectOne(unit, 'Wants', 'network-online.target');
    expectOne(service, 'Type', 'simple');
    expectOne(service, 'ExecStart', '/usr/local/bin/ct-ops-agent -config /etc/ct-ops/agent.toml');
    expectOne(service, 'Restart', 'on-failure');
    expectOne(service, 'RestartSec', '5');
    expectOne(service, 'RestartPreventExitStatus', '77 78');
    expectOne(service, 'User', 'ct-ops');
    expectOne(service, 'Group', 'ct-ops');
    expectOne(service, 'StandardOutput', 'journal');
    expectOne(service, 'NoNewPrivileges', 'yes');
    expectOne(service, 'ProtectSystem', 'strict');
    expectOne(service, 'ReadWritePaths', '/var/lib/ct-ops/agent /var/lib/ct-ops/requests');
    expectOne(service, 'CapabilityBoundingSet', '');
    expectOne(service, 'RestrictAddressFamilies', 'AF_INET AF_INET6 AF_UNIX AF_NETLINK');
    expectOne(service, 'MemoryDenyWriteExecute', 'no');
    for (const key of ['PrivateTmp', 'ProtectHome', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictSUIDSGID', 'LockPersonality',
      'PrivateUsers', 'PrivateMounts', 'RemoveIPC']) {
      expectOne(service, key, 'yes');
    }
    assert.deepEqual(service.get('SystemCallFilter'), ['@system-service', '~@privileged @resources', '~io_uring_setup io_uring_enter io_uring_register']);
    expectOne(service, 'SystemCallErrorNumber', 'EPERM');
    expectOne(service, 'ProtectProc', 'invisible');
    assert.equal(service.get('ProcSubset'), undefined, 'vitals read /proc/meminfo and /proc/stat');
    expectOne(directives(read('systemd/ct-ops-agent.service'), 'Install'), 'WantedBy', 'multi-user.target');
  });

  test('systemd-analyze security rates the agent unit at an exposure of 2.0 or less', () => {
    const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', repo('systemd/ct-ops-agent.service')], { encoding: 'utf8' });
    assert.notEqual(result.error?.message.includes('ENOENT'), true, 'systemd-analyze is not installed (apt-get install -y systemd)');
    const exposure = /Overall exposure level for ct-ops-agent\.service: (\d+\.\d)/.exec(result.stdout)?.[1];
    assert.ok(exposure !== undefined, `no exposure level (systemd-analyze 252 or later is needed for --offline): ${result.stdout}${result.stderr}`);
    assert.ok(Number(exposure) <= 2.0, `exposure ${exposure}:\n${result.stdout.split('\n').filter((line) => line.startsWith('✗')).join('\n')}`);
  });

  test('the helper path unit watches the request file and triggers the root oneshot helper', () => {
    const path = directives(read('systemd/ct-ops-agent-helper.path'), 'Path');
    assert.deepEqual(path.get('PathExists'), ['/var/lib/ct-ops/requests/request']);
    assert.deepEqual(path.get('Unit'), ['ct-ops-agent-helper.service']);
    const helper = directives(read('systemd/ct-ops-agent-helper.service'), 'Service');
    assert.deepEqual(helper.get('Type'), ['oneshot']);
    assert.deepEqual(helper.get('ExecStart'), ['/usr/local/libexec/ct-ops/ct-ops-agent-helper.sh']);
    assert.equal(helper.get('User'), undefined, 'the helper runs as root');
  });

  describe('systemd-analyze verify', { skip: chrootUnavailable() }, () => {
    let root: TestRoot;
    before(() => {
      root = TestRoot.create();
      // verify checks that ExecStart binaries exist: put stand-ins at the installed paths.
      mkdirSync(root.at('usr/local/libexec/ct-ops'), { recursive: true });
      for (const binary of ['usr/local/bin/ct-ops-agent', 'usr/local/libexec/ct-ops/ct-ops-agent-helper.sh']) {
        writeFileSync(root.at(binary), '#!/bin/sh\n');
        chmodSync(root.at(binary), 0o755);
      }
    });
    after(() => root?.dispose());

    function verify(): { code: number | null; output: string } {
      const result = spawnSync('systemd-analyze', ['verify', '--man=no', `--root=${root.path}`, ...UNITS], { encoding: 'utf8' });
      return { code: result.status, output: (result.stdout + result.stderr).trim() };
    }

    test('the three units pass systemd-analyze verify with no warning', () => {
      for (const unit of UNITS) copyFileSync(repo(`systemd/${unit}`), root.at(`etc/systemd/system/${unit}`));
      const result = verify();
      assert.equal(result.code, 0, result.output);
      assert.equal(result.output, '', 'no warnings');
    });

    test('the same check reports a misspelt directive (the check itself works)', () => {
      writeFileSync(root.at('etc/systemd/system/ct-ops-agent.service'), read('systemd/ct-ops-agent.service').replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes'));
      const result = verify();
      assert.match(result.output, /Unknown key 'NoNewPrivilege'/);
      copyFileSync(repo('systemd/ct-ops-agent.service'), root.at('etc/systemd/system/ct-ops-agent.service'));
    });
  });
});

describe('launchd property lists', () => {
  const load = `import json, plistlib, sys
print(json.dumps({f: plistlib.load(open(f, 'rb')) for f in sys.argv[1:]}))`;

  test('both plists parse with plistlib and run the installed agent and helper', () => {
    const result = python(load, repo('launchd/com.ct-ops.agent.plist'), repo('launchd/com.ct-ops.agent-helper.plist'));
    assert.equal(result.code, 0, result.stderr);
    const plists = JSON.parse(result.stdout) as Record<string, Record<string, unknown>>;
    const agent = plists[repo('launchd/com.ct-ops.agent.plist')]!;
    assert.equal(agent.Label, 'com.ct-ops.agent');
    assert.deepEqual(agent.ProgramArguments, ['/usr/local/bin/ct-ops-agent', '-config', '/etc/ct-ops/agent.toml']);
    assert.equal(agent.StandardOutPath, '/var/log/ct-ops-agent.log');
    assert.equal(agent.StandardErrorPath, '/var/log/ct-ops-agent.log');
    assert.deepEqual(agent.KeepAlive, { SuccessfulExit: false });
    assert.equal(agent.RunAtLoad, true);
    const helper = plists[repo('launchd/com.ct-ops.agent-helper.plist')]!;
    assert.equal(helper.Label, 'com.ct-ops.agent-helper');
    assert.deepEqual(helper.ProgramArguments, ['/bin/sh', '/usr/local/libexec/ct-ops/ct-ops-agent-helper.sh']);
    assert.deepEqual(helper.WatchPaths, ['/Library/Application Support/CT-Ops/requests']);
    assert.equal(helper.AbandonProcessGroup, true);
    assert.equal(helper.UserName, undefined, 'the helper runs as root');
  });
});

describe('Windows service wrapper and PowerShell scripts (structure only: no PowerShell here)', () => {
  test('the WinSW configuration is well-formed and runs the agent with its config, restarting on failure', () => {
    const code = `import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
print(json.dumps({"tag": root.tag, "id": root.findtext("id"), "executable": root.findtext("executable"),
  "arguments": root.findtext("arguments"), "startmode": root.findtext("startmode"),
  "onfailure": [e.get("action") for e in root.findall("onfailure")], "log": root.find("log").get("mode")}))`;
    const result = python(code, repo('windows/ct-ops-agent-service.xml'));
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      tag: 'service', id: 'ct-ops-agent', executable: '%BASE%\\ct-ops-agent.exe',
      arguments: '-config "%ProgramData%\\CT-Ops\\agent.toml"', startmode: 'Automatic',
      onfailure: ['restart', 'restart', 'restart'], log: 'roll-by-size',
    });
    assert.equal(python('import sys, xml.etree.ElementTree as ET; ET.parse(sys.argv[1])', repo('windows/ct-ops-agent-service.exe.config')).code, 0);
  });

  for (const script of ['installers/install.ps1', 'installers/uninstall.ps1']) {
    test(`${script}: stops on errors, checks $LASTEXITCODE after every native command, evaluates nothing`, () => {
      const text = read(script);
      const code = text.replace(/<#[\s\S]*?#>/g, '').split('\n').filter((line) => !line.trim().startsWith('#')).join('\n');
      assert.match(code, /^\$ErrorActionPreference = 'Stop'$/m);
      assert.match(code, /^Set-StrictMode -Version/m);
      assert.match(code, /IsInRole\(\[Security\.Principal\.WindowsBuiltInRole\]::Administrator\)/, 'elevation check');
      // The one place a native program is called ("& $FilePath") is followed by the exit-code check.
      const callSites = code.match(/^\s*&\s.*$/gm) ?? [];
      assert.deepEqual(callSites.map((line) => line.trim()), ['& $FilePath @Arguments']);
      assert.match(code, /& \$FilePath @Arguments\s*\n\s*if \(\$LASTEXITCODE -ne 0[\s)]/);
      // Native programs appear only as arguments of Invoke-Native.
      for (const line of code.split('\n')) {
        if (/\b(icacls|sc)\.exe\b|\$Wrapper\s+@\(/.test(line) && !/^\s*\$Wrapper = /.test(line)) assert.match(line, /Invoke-Native /, `unchecked native call: ${line.trim()}`);
      }
      assert.doesNotMatch(code, /Invoke-Expression|\biex\b|Start-Process|cmd(\.exe)?\s+\/c/i);
      assert.doesNotMatch(code, /Get-Content[^\n]*agent\.toml/, 'never reads agent.toml');
      // Balanced brackets outside strings: a cheap stand-in for a parse.
      const stripped = code.replace(/'[^'\n]*'/g, "''").replace(/"(?:`.|[^"`\n])*"/g, '""');
      for (const [open, close] of [['{', '}'], ['(', ')'], ['[', ']']] as const) {
        assert.equal(stripped.split(open).length, stripped.split(close).length, `${open}${close} balanced`);
      }
    });
  }

  test('uninstall.ps1 -ReportTask takes only a task id, restarts outside the agent\'s process tree, copies privately and reports on every way out', () => {
    const text = read('installers/uninstall.ps1');
    assert.match(text, /\[ValidatePattern\('\^tsk_\[A-Za-z0-9\]\{1,64\}\$'\)\]\s*\n\s*\[string\]\$ReportTask = ''/);
    // WinSW ends the agent's child processes on stop: the real run is not one of them.
    assert.match(text, /Invoke-CimMethod -ClassName Win32_Process -MethodName Create/);
    assert.match(text, /-File "\{1\}" -ReportTask \{2\} -Detached' -f \$powershell, \$PSCommandPath, \$ReportTask/);
    assert.match(text, /SetAccessRuleProtection\(\$true, \$false\)/);
    assert.match(text, /foreach \(\$sid in 'S-1-5-18', 'S-1-5-32-544'\)/);
    assert.match(text, /\[IO\.Directory\]::CreateDirectory\(\$kit, \$acl\)/);
    assert.match(text, /Invoke-Native \(Join-Path \$ProgramFolder 'ct-ops-agent\.exe'\) \(@\('-config', \(Join-Path \$DataFolder 'agent\.toml'\), 'report-task', "--task-id=\$ReportTask"\) \+ \$outcome\) -AllowFailure/);
    assert.match(text, /'--outcome=failed', '--error-code=ERR_UNINSTALL_FAILED'/);
    assert.match(text, /\} finally \{\n(\s*#.*\n)*\s*try \{\n\s*if \(\$null -ne \$kit\) \{ Send-Report \$removed \$kit \$kit \}/);
  });

  test('uninstall.ps1: a failed report keeps the exit code and the transcript, is retried on 69/75, and a failed restart is reported', () => {
    const code = read('installers/uninstall.ps1').replace(/<#[\s\S]*?#>/g, '').split('\n').filter((line) => !line.trim().startsWith('#')).join('\n');
    /** The text of the first `{ … }` block after `start` (brackets in strings are not counted). */
    const block = (start: string): string => {
      const from = code.indexOf(start);
      assert.ok(from >= 0, `${start} not found`);
      const open = code.indexOf('{', from + start.length - 1);
      let depth = 0;
      for (let at = open; at < code.length; at++) {
        const char = code[at];
        if (char === "'" || char === '"') {
          at = code.indexOf(char, at + 1);
          continue;
        }
        if (char === '{') depth++;
        if (char === '}' && --depth === 0) return code.slice(open, at + 1);
      }
      assert.fail(`${start}: unbalanced`);
    };

    // The report never ends the script: no exit, no Fail, no throw, and native failures are its to judge.
    const report = block('function Send-Report(');
    const reportCode = report.replace(/'[^'\n]*'/g, "''").replace(/"(?:`.|[^"`\n])*"/g, '""');
    assert.doesNotMatch(reportCode, /\bexit\b|\bFail\b|\bthrow\b/);
    assert.match(report, /-AllowFailure\s*\n\s*\$reported = \$LASTEXITCODE/);
    assert.match(report, /\} catch \{\n\s*Write-Error -Message "ct-ops uninstall: reporting task \$ReportTask failed/);
    // Three tries while the appliance is unreachable (69, 75), 5 s apart.
    assert.match(report, /if \(\(\$reported -ne 69 -and \$reported -ne 75\) -or \$attempt -ge 3\) \{ break \}/);
    assert.match(report, /Start-Sleep -Seconds 5/);
    const invokeNative = block('function Invoke-Native(');
    assert.match(invokeNative, /if \(\$LASTEXITCODE -ne 0 -and -not \$AllowFailure\) \{\n\s*Fail \$ExitStep/);

    // The main run: the report and the deletion of the copies sit in a try whose finally closes the transcript.
    const mainFinally = code.slice(code.indexOf('$removed = $false'));
    assert.match(mainFinally, /try \{\n\s*if \(\$null -ne \$kit\) \{ Send-Report \$removed \$kit \$kit \}\n\s*\} finally \{\n\s*if \(\$null -ne \$kit\) \{ Remove-Item -LiteralPath \$kit -Recurse -Force -ErrorAction SilentlyContinue \}\n\s*Stop-Transcript \| Out-Null\n\s*\}/);

    // A restart that fails (an error or a non-zero ReturnValue) is reported with the installed agent before the exit.
    const restart = block("if ($ReportTask -ne '' -and -not $Detached) {");
    assert.match(restart, /try \{\n\s*\$started = Invoke-CimMethod[^\n]*\n\s*if \(\$started\.ReturnValue -ne 0\) \{\n\s*\$script:Failure = /);
    assert.match(restart, /\} catch \{\n\s*\$script:Failure = "Win32_Process\.Create could not restart the uninstaller/);
    const failed = block("if ($script:Failure -ne '') {");
    const order = ['Send-Report $false $ProgramDir $DataRoot', 'Stop-Transcript | Out-Null', 'exit $ExitStep'].map((step) => failed.indexOf(step));
    assert.ok(order.every((at, i) => at >= 0 && (i === 0 || at > order[i - 1]!)), `report, transcript, exit in that order:\n${failed}`);
    assert.ok(code.indexOf('function Send-Report(') < code.indexOf("if ($ReportTask -ne '' -and -not $Detached) {"), 'Send-Report is defined before the restart uses it');
  });

  test('install.ps1 refuses bundle file names outside [A-Za-z0-9._-] (anchored with \\z, not $), copies through unique names, and both scripts hold the machine-wide install mutex', () => {
    const install = read('installers/install.ps1');
    assert.match(install, /if \(\$item\.Name -cnotmatch '\^\[A-Za-z0-9\._-\]\+\\z'\) \{ Fail \$ExitTampered/);
    assert.ok(install.indexOf("-cnotmatch '^[A-Za-z0-9._-]+\\z'") < install.indexOf('-not $expected.ContainsKey($item.Name)'), 'names are checked before they are looked up');
    assert.doesNotMatch(install, /"\$Destination\.ct-ops-new"/);
    assert.match(install, /\$temporary = '\{0\}\.\{1\}\.ct-ops-new' -f \$Destination, \[guid\]::NewGuid\(\)/);
    for (const script of ['installers/install.ps1', 'installers/uninstall.ps1']) {
      const text = read(script);
      assert.match(text, /New-Object System\.Threading\.Mutex\(\$false, 'Global\\CT-Ops-Agent-Install'\)/, `${script}: the install mutex`);
      assert.match(text, /catch \[System\.Threading\.AbandonedMutexException\]/, `${script}: a lock left by a killed run is taken over`);
    }
    const uninstall = read('installers/uninstall.ps1');
    assert.ok(uninstall.indexOf('Global\\CT-Ops-Agent-Install') > uninstall.indexOf("if ($ReportTask -ne '' -and -not $Detached) {"), 'the detached run takes the lock, not the agent\'s child that starts it');
  });

  test('install.ps1 verifies every file, refuses extra and missing ones, and locks ProgramData down to SYSTEM and Administrators', () => {
    const text = read('installers/install.ps1');
    assert.match(text, /Get-FileHash -LiteralPath \$Path -Algorithm SHA256/);
    assert.match(text, /unexpected file in the bundle/);
    assert.match(text, /missing from the bundle/);
    assert.match(text, /'\/inheritance:r', '\/grant:r', "\$\{SystemSid\}:\(OI\)\(CI\)F", "\$\{AdminsSid\}:\(OI\)\(CI\)F"/);
    assert.match(text, /\$SystemSid = '\*S-1-5-18'/);
    assert.match(text, /\$AdminsSid = '\*S-1-5-32-544'/);
    assert.match(text, /Invoke-Native \$Wrapper @\('install'\)/, 'service registered through WinSW, not sc.exe create');
    assert.doesNotMatch(text, /sc\.exe'? @\('create'/);
  });
});
