import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parse as parseToml } from 'smol-toml';
import { parseIngestAddress } from '../agent/config/address.ts';
import { loadAgentConfig } from '../agent/config/load.ts';
import { loadApplianceConfig } from '../appliance/config/load.ts';
import { parseBundleRequest } from '../bundler/lib/validate.ts';
import { CtOpsError } from '../common/errors.ts';
import { describeHostName, hostNameWarning, parseHostName } from '../common/host-name.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { createFixtureAppliance, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { AGENT_BIN, APPLIANCE_BIN, LoggedProcess, REPO_ROOT, run } from './helpers/processes.ts';

const IDN = 'bücher.example';
const IDN_ASCII = 'xn--bcher-kva.example';
const BUNDLER_BIN = join(REPO_ROOT, 'dist/ct-ops-bundle.js');

/**
 * Names that cannot become a certificate / DNS name, each with the reason the error must give;
 * also refused as the host of "host:port". URL punctuation is refused before the IDNA conversion,
 * which would otherwise parse it as a URL (good.example/evil → good.example, %61 → a).
 */
const UNUSABLE: ReadonlyArray<readonly [string, RegExp]> = [
  ['xn--a.example', /cannot be converted to its ASCII \(IDNA\) form/],
  ['good.example/evil', /holds "\/", which ends the host part of a URL/],
  ['good.example\\evil', /holds "\\", which ends the host part of a URL/],
  ['good.example?x', /holds "\?", which starts the query of a URL/],
  ['good.example#x', /holds "#", which starts the fragment of a URL/],
  ['%61ppliance.example', /holds "%": percent escapes \(%61\) are not decoded/],
  ['a%2eb', /holds "%"/],
  ['exa%mple.test', /holds "%"/],
  ['user@good.example', /holds "@", which separates a user name from the host/],
  ['a b.example', /holds a space or control character \(U\+0020\)/],
  ['a\tb.example', /holds a space or control character \(U\+0009\)/],
  ['a!b.example', /holds "!"; host names hold only letters, digits, hyphens, underscores and dots/],
  ['[1.2.3.4]', /brackets enclose IPv6 addresses only; write 1\.2\.3\.4 without them/],
  ['[good.example]', /brackets enclose IPv6 addresses only, and this is not one/],
  ['[fe80::1%eth0]', /names an IPv6 zone \(%\.\.\.\), which a certificate cannot name/],
  ['999.1.1.1', /not a valid IPv4 address \(four numbers from 0 to 255\)/],
  ['a.123', /last label 123 is a number, so URL parsers read the name as an IPv4 address/],
  ['good.example\uFF0Fevil', /cannot be converted/],
  ['a\uFF01b.example', /its ASCII form a!b\.example holds "!"; host names hold only letters/],
  ['a..b.example', /empty label/],
  ['.example', /empty label/],
  [`${'a'.repeat(64)}.example`, /label a{64} is longer than 63/],
  [`${'ü'.repeat(60)}.example`, /label xn--\S+ is longer than 63/],
  [Array.from({ length: 5 }, () => 'b'.repeat(60)).join('.'), /longer than 253/],
  ['-lead.example', /the label -lead begins or ends with a hyphen/],
  ['trail-.example', /the label trail- begins or ends with a hyphen/],
  ['ab--cd.example', /"--" in positions 3-4/],
  ['127.1', /read it as the IP address 127\.0\.0\.1/],
];

/** Refused as a SAN; as the host of "host:port" they do not parse as host:port at all. */
const UNUSABLE_AS_SAN: ReadonlyArray<readonly [string, RegExp]> = [
  ['ingest.example:9443', /ends in a port \(:9443\); a host name or certificate name carries none/],
  ['fe80::1%eth0', /names an IPv6 zone/],
  ['a:b', /holds ":", which only IPv6 addresses do/],
];

function expectInvalid(run: () => unknown, code: CtOpsError['code'], pattern: RegExp, label: string): void {
  assert.throws(run, (error: unknown) => error instanceof CtOpsError && error.code === code && pattern.test(error.message), label);
}

describe('host names are converted to their ASCII (IDNA) form once, at the edge', () => {
  test('Unicode, mixed case and a trailing dot give one lower-case ASCII name; underscores are kept; IPv6 is canonical', () => {
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      [IDN, IDN_ASCII, `${IDN} (${IDN_ASCII})`],
      ['BÜCHER.Example.', IDN_ASCII, `${IDN} (${IDN_ASCII})`],
      ['XN--BCHER-KVA.EXAMPLE', IDN_ASCII, `${IDN} (${IDN_ASCII})`],
      ['例え.テスト', 'xn--r8jz45g.xn--zckzah', '例え.テスト (xn--r8jz45g.xn--zckzah)'],
      ['Ingest.Example.COM.', 'ingest.example.com', 'ingest.example.com'],
      ['localhost', 'localhost', 'localhost'],
      ['127.0.0.1', '127.0.0.1', '127.0.0.1'],
      ['::1', '::1', '::1'],
      ['[fd00::1]', 'fd00::1', 'fd00::1'],
      ['0:0:0:0:0:0:0:1', '::1', '::1'],
      ['[FD00:0::1]', 'fd00::1', 'fd00::1'],
      ['ct_ops_appliance', 'ct_ops_appliance', 'ct_ops_appliance'],
      ['My_Host.Example', 'my_host.example', 'my_host.example'],
      ['_grpc.bücher.example', `_grpc.${IDN_ASCII}`, `_grpc.${IDN} (_grpc.${IDN_ASCII})`],
      ['straße.de', 'xn--strae-oqa.de', 'straße.de (xn--strae-oqa.de)'],
    ];
    for (const [given, ascii, display] of cases) {
      const name = parseHostName(given, 'test');
      assert.deepEqual([name.ascii, describeHostName(name), name.given], [ascii, display, undefined], given);
    }
  });

  test('a name read as another name than written (ẞ → ss, ligatures, circled digits, soft hyphens) says so, and warns', () => {
    const cases: ReadonlyArray<readonly [string, string, string]> = [
      ['STRAẞE.de', 'strasse.de', 'STRAẞE.de (read as strasse.de)'],
      ['ﬁ.example', 'fi.example', 'ﬁ.example (read as fi.example)'],
      ['①.example', '1.example', '①.example (read as 1.example)'],
      ['ab\u00ADc.example', 'abc.example', 'ab\u00ADc.example (read as abc.example)'],
      ['ab\u200Bc.example.', 'abc.example', 'ab\u200Bc.example (read as abc.example)'],
      ['ﬁ.bücher.example', `fi.${IDN_ASCII}`, `ﬁ.bücher.example (read as fi.${IDN}, fi.${IDN_ASCII})`],
    ];
    for (const [given, ascii, display] of cases) {
      const name = parseHostName(given, 'test');
      assert.equal(name.ascii, ascii, given);
      assert.equal(describeHostName(name), display, given);
      assert.match(hostNameWarning(name, '--san') ?? '', new RegExp(`^--san: ".+" is read as .*${ascii.replaceAll('.', '\\.')}.*, which is not the name as written`), given);
    }
    assert.equal(describeHostName(parseHostName('ﬁ.example', 'test'), 9443), 'ﬁ.example:9443 (read as fi.example:9443)');
  });

  test('a name that cannot be converted, or is no DNS name afterwards, is ERR_CONFIG_INVALID naming where it came from and why', () => {
    for (const [name, reason] of [...UNUSABLE, ...UNUSABLE_AS_SAN]) expectInvalid(() => parseHostName(name, '--san'), 'ERR_CONFIG_INVALID', new RegExp(`^--san: .*${reason.source}`), name);
  });

  test('agent.toml and CT_OPS_INGEST_ADDRESS: the target is ASCII, people see both forms, IPv6 keeps its brackets', () => {
    const address = parseIngestAddress(`${IDN}:9443`, 'x');
    assert.deepEqual([address.target, address.host, address.port, address.unicodeTarget, address.display], [`${IDN_ASCII}:9443`, IDN_ASCII, 9443, `${IDN}:9443`, `${IDN}:9443 (${IDN_ASCII}:9443)`]);
    assert.equal(parseIngestAddress('Ingest.EXAMPLE.:9443', 'x').target, 'ingest.example:9443');
    assert.equal(parseIngestAddress('[FD00:0::1]:9443', 'x').target, '[fd00::1]:9443');
    assert.equal(parseIngestAddress('ct_ops_appliance:9443', 'x').target, 'ct_ops_appliance:9443');
    expectInvalid(() => parseIngestAddress('[fe80::1%eth0]:9443', 'x'), 'ERR_CONFIG_INVALID', /^x: "\[fe80::1%eth0\]" is not a usable host name: it names an IPv6 zone/, 'zone id');
    const dir = mkdtempSync(join(tmpdir(), 'ct-ops-idn-'));
    try {
      const file = join(dir, 'agent.toml');
      writeFileSync(file, `[ingest]\naddress = "${IDN}:9443"\n`);
      assert.equal(loadAgentConfig({ file, env: {} }).config.ingest.addresses[0]!.target, `${IDN_ASCII}:9443`);
      assert.deepEqual(loadAgentConfig({ file, env: {} }).warnings, []);
      const readAs = loadAgentConfig({ file, env: { CT_OPS_INGEST_ADDRESS: 'ﬁ.example:9443' } });
      assert.equal(readAs.config.ingest.addresses[0]!.target, 'fi.example:9443');
      assert.match(readAs.warnings.join('\n'), /^CT_OPS_INGEST_ADDRESS: "ﬁ\.example" is read as fi\.example, which is not the name as written/m);
      for (const [name, reason] of UNUSABLE) {
        expectInvalid(() => loadAgentConfig({ file, env: { CT_OPS_INGEST_ADDRESS: `${name}:9443` } }), 'ERR_CONFIG_INVALID', new RegExp(`^CT_OPS_INGEST_ADDRESS: .*${reason.source}`), name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('appliance SANs from flags, environment and file are converted, de-duplicated, and refused when unusable', () => {
    const sans = (flags: string[]) => loadApplianceConfig({ env: {}, flags: { sans: flags } }).sans;
    assert.deepEqual(sans([IDN, 'BÜCHER.EXAMPLE.', IDN_ASCII, '127.0.0.1', '[::1]', '::1', '0:0:0:0:0:0:0:1', 'ct_ops_appliance']), [IDN_ASCII, '127.0.0.1', '::1', 'ct_ops_appliance']);
    assert.deepEqual(loadApplianceConfig({ env: { CT_OPS_APPLIANCE_SANS: `${IDN},Localhost` }, flags: {} }).sans, [IDN_ASCII, 'localhost']);
    for (const [name, reason] of [...UNUSABLE, ...UNUSABLE_AS_SAN]) expectInvalid(() => sans(['localhost', name]), 'ERR_CONFIG_INVALID', new RegExp(`^--san: .*${reason.source}`), name);
    expectInvalid(() => loadApplianceConfig({ env: { CT_OPS_APPLIANCE_SANS: 'ok.example,good.example/evil' }, flags: {} }), 'ERR_CONFIG_INVALID', /^CT_OPS_APPLIANCE_SANS: "good\.example\/evil"/, 'env');
    const readAs = loadApplianceConfig({ env: {}, flags: { sans: ['STRAẞE.example', 'localhost'] } });
    assert.deepEqual(readAs.sans, ['strasse.example', 'localhost']);
    assert.deepEqual(readAs.warnings, ['--san: "STRAẞE.example" is read as strasse.example, which is not the name as written; write that name to use it knowingly']);
  });

  test("the default SANs keep this machine's host name when it has an underscore, and warn when they must leave it out", { skip: utsNamespaceUnavailable() }, async () => {
    const script = `import { loadApplianceConfig } from ${JSON.stringify(join(REPO_ROOT, 'appliance/config/load.ts'))};
const config = loadApplianceConfig({ env: {}, flags: {} });
process.stdout.write(JSON.stringify({ sans: config.sans, warnings: config.warnings }));`;
    // Written to the kernel directly: hostname(1) itself refuses an underscore.
    const defaults = async (hostName: string) => {
      const result = await run('unshare', ['--uts', 'sh', '-c', 'printf %s "$1" >/proc/sys/kernel/hostname && shift && exec "$@"', 'sh', hostName, process.execPath, '--import', 'tsx', '--input-type=module', '-e', script], {}, 20_000);
      assert.equal(result.code, 0, result.stderr);
      return JSON.parse(result.stdout) as { sans: string[]; warnings: string[] };
    };
    assert.deepEqual(await defaults('ct_ops_appliance'), { sans: ['localhost', '127.0.0.1', '::1', 'ct_ops_appliance'], warnings: [] });
    const dropped = await defaults('two..dots');
    assert.deepEqual(dropped.sans, ['localhost', '127.0.0.1', '::1']);
    assert.match(dropped.warnings.join('\n'), /^the default sans leave out this machine's host name: "two\.\.dots" is not a usable host name: it has an empty label/);
  });

  test('the bundler writes the ASCII address and refuses an unusable one with its input error', () => {
    const request = (address: string) => parseBundleRequest({ os: 'linux', arch: 'x64', address, createdBy: 'tester' });
    assert.deepEqual(request(`${IDN}:9443`).addresses, [`${IDN_ASCII}:9443`]);
    assert.deepEqual(request('BÜCHER.Example.:9443').addresses, [`${IDN_ASCII}:9443`]);
    assert.deepEqual(request('[0:0::1]:9443').addresses, ['[::1]:9443']);
    for (const [name, reason] of UNUSABLE) {
      assert.throws(() => request(`${name}:9443`), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVALID_ARGUMENT' && error.details.field === 'address' && error.message.startsWith('address: ') && reason.test(error.message), name);
    }
  });
});

/** True when this machine lets us give one process its own host name (a UTS namespace). */
function utsNamespaceUnavailable(): string | undefined {
  const probe = spawnSync('unshare', ['--uts', 'true']);
  return probe.status === 0 ? undefined : `no UTS namespace here (unshare --uts: ${probe.stderr?.toString().trim() || probe.error?.message})`;
}

/** True when this machine lets us give one process its own /etc/hosts (a private mount namespace). */
function mountNamespaceUnavailable(): string | undefined {
  const probe = spawnSync('unshare', ['--mount', '--propagation', 'private', 'true']);
  return probe.status === 0 ? undefined : `no mount namespace here (unshare --mount: ${probe.stderr?.toString().trim() || probe.error?.message})`;
}

describe('an appliance named by an internationalised name, with real processes', { skip: mountNamespaceUnavailable() }, () => {
  let appliance: TestAppliance;
  let scratch: string;
  let hostsFile: string;
  const agents: TestAgent[] = [];

  before(async () => {
    scratch = mkdtempSync(join(tmpdir(), 'ct-ops-idn-'));
    // Only the agents see this name: they run in a mount namespace whose /etc/hosts is this file.
    hostsFile = join(scratch, 'hosts');
    writeFileSync(hostsFile, `127.0.0.1 localhost\n127.0.0.1 ${IDN_ASCII}\n`);
    appliance = await TestAppliance.start({ args: ['--san', IDN, '--san', 'STRAẞE.example'] });
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance?.dispose();
    rmSync(scratch, { recursive: true, force: true });
  });

  /** unshare arguments that run the command with hostsFile as its /etc/hosts (a private mount namespace). */
  function withPrivateHosts(...command: string[]): string[] {
    return ['--mount', '--propagation', 'private', 'sh', '-c', 'mount --bind "$1" /etc/hosts && shift && exec "$@"', 'sh', hostsFile, ...command];
  }

  /** The real compiled agent, resolving names through hostsFile. */
  function startAgent(address: string, orgToken: string): LoggedProcess {
    const agent = new TestAgent({ address, caCertFile: appliance.caCertPath, orgToken });
    agents.push(agent);
    agent.process = new LoggedProcess('unshare', withPrivateHosts(process.execPath, AGENT_BIN, '-config', agent.configPath), { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile, CT_OPS_LOG_LEVEL: 'debug' });
    return agent.process;
  }

  test('the server certificate names the ASCII form, and the start log shows both forms', () => {
    const text = execFileSync('openssl', ['x509', '-in', join(appliance.dataDir, 'server.crt'), '-noout', '-text'], { encoding: 'utf8' });
    assert.match(text, new RegExp(`DNS:${IDN_ASCII.replaceAll('.', '\\.')}(,|\\s|$)`));
    assert.ok(!/DNS:[^,\n]*[^\x20-\x7e,\n]/.test(text), 'no non-ASCII byte in a DNS SAN');
    const started = appliance.process.logged('appliance started')[0]!;
    const sans = started.sans as string[];
    const sansUnicode = started.sans_unicode as string[];
    assert.deepEqual([sans.slice(-2), sansUnicode.slice(-2)], [[IDN_ASCII, 'strasse.example'], [IDN, 'strasse.example']]);
    assert.equal(sansUnicode.length, sans.length);
    assert.match(text, /DNS:strasse\.example(,|\s|$)/);
    assert.deepEqual(appliance.process.logged('configuration warning').map((line) => line.warning), ['--san: "STRAẞE.example" is read as strasse.example, which is not the name as written; write that name to use it knowingly']);
  });

  test('agents configured with the Unicode name, or the ASCII name in capitals with a trailing dot, enrol and stream', async () => {
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '2');
    const unicode = startAgent(`${IDN}:${appliance.grpcPort}`, token);
    const ascii = startAgent(`XN--BCHER-KVA.EXAMPLE.:${appliance.grpcPort}`, token);
    await Promise.all([unicode.waitForLog('heartbeat stream opened', {}, 30_000), ascii.waitForLog('heartbeat stream opened', {}, 30_000)]);
    const registering = unicode.logged('registering agent')[0];
    assert.deepEqual([registering?.address, registering?.address_unicode], [`${IDN_ASCII}:${appliance.grpcPort}`, `${IDN}:${appliance.grpcPort}`]);
    const online = (await appliance.hosts()).filter((host) => host.status === 'online');
    assert.equal(online.length, 2);
  });

  test('ct-ops-agent -check verifies the certificate against the ASCII server name and reports both forms', async () => {
    const agent = new TestAgent({ address: `${IDN}:${appliance.grpcPort}`, caCertFile: appliance.caCertPath });
    agents.push(agent);
    const result = await run('unshare', withPrivateHosts(process.execPath, AGENT_BIN, '-check', '-config', agent.configPath), { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile }, 20_000);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.ok(result.stdout.includes(`ingest ${IDN}:${appliance.grpcPort} (${IDN_ASCII}:${appliance.grpcPort}) is reachable and trusted`), result.stdout);
  });
});

describe('an unusable name is refused at start', () => {
  let fixture: FixtureAppliance;
  before(async () => {
    fixture = await createFixtureAppliance();
  });
  after(() => rmSync(fixture.root, { recursive: true, force: true }));

  test('the appliance exits 78 with ERR_CONFIG_INVALID and writes no certificate (a URL path in a SAN too)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-idn-appliance-'));
    try {
      const result = await run(process.execPath, [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'xn--a.example'], {}, 20_000);
      assert.equal(result.code, 78, result.stdout + result.stderr);
      assert.match(result.stdout + result.stderr, /ERR_CONFIG_INVALID/);
      assert.match(result.stdout + result.stderr, /--san: "xn--a\.example" is not a usable host name/);
      assert.throws(() => readFileSync(join(dataDir, 'server.crt')));
      const path = await run(process.execPath, [APPLIANCE_BIN, 'serve', '--data-dir', dataDir, '--listen', '127.0.0.1', '--grpc-port', '0', '--http-port', '0', '--san', 'good.example/evil'], {}, 20_000);
      assert.equal(path.code, 78, path.stdout + path.stderr);
      assert.match(path.stderr, /--san: "good\.example\/evil" is not a usable host name: it holds "\/"/);
      assert.throws(() => readFileSync(join(dataDir, 'server.crt')));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('the agent exits 78 with ERR_CONFIG_INVALID naming the setting', async () => {
    const agent = new TestAgent({ address: 'ab--cd.example:9443', caCertFile: join(fixture.dataDir, 'ca.crt'), orgToken: 'tok_x' });
    try {
      const result = await run(process.execPath, [AGENT_BIN, '-config', agent.configPath], { CT_OPS_MACHINE_ID_FILE: agent.machineIdFile }, 20_000);
      assert.equal(result.code, 78, result.stdout + result.stderr);
      assert.match(result.stderr, /ERR_CONFIG_INVALID: .*\[ingest\] address: "ab--cd\.example" is not a usable host name/);
    } finally {
      await agent.dispose();
    }
  });

  test('ct-ops-bundle build refuses it with exit 65; a Unicode address becomes ASCII in agent.toml and both forms in README.md', async () => {
    const out = join(fixture.root, 'out');
    const build = (address: string) => run(process.execPath, [BUNDLER_BIN, 'build', '--data-dir', fixture.dataDir, '--os', 'linux', '--arch', 'x64', '--address', address, '--token', 'none', '--out', out, '--agents-dir', fixture.agentsDir, '--templates-dir', fixture.templatesDir, '--json'], { SOURCE_DATE_EPOCH: '' }, 60_000);
    const refused = await build('xn--a.example:9443');
    assert.equal(refused.code, 65, refused.stderr);
    assert.match(refused.stderr, /ERR_INVALID_ARGUMENT/);
    assert.match(refused.stderr, /cannot be converted to its ASCII \(IDNA\) form/);
    const path = await build('good.example/evil:9443');
    assert.equal(path.code, 65, path.stderr);
    assert.match(path.stderr, /ERR_INVALID_ARGUMENT: address: "good\.example\/evil" is not a usable host name: it holds "\/"/);
    const readAs = await build('ﬁ.example:9443');
    assert.equal(readAs.code, 0, readAs.stderr);
    assert.equal((JSON.parse(readAs.stdout) as { ingest_address: string }).ingest_address, 'fi.example:9443');
    assert.match(readAs.stderr, /ct-ops-bundle: warning: --address: "ﬁ\.example" is read as fi\.example, which is not the name as written/);

    const built = await build(`${IDN}:9443`);
    assert.equal(built.code, 0, built.stderr);
    const printed = JSON.parse(built.stdout) as { path: string; ingest_address: string };
    assert.equal(printed.ingest_address, `${IDN_ASCII}:9443`);
    const dir = mkdtempSync(join(tmpdir(), 'ct-ops-idn-bundle-'));
    try {
      execFileSync('unzip', ['-q', printed.path, '-d', dir]);
      const top = join(dir, 'ct-ops-agent-0.1.0-linux-x64');
      const toml = parseToml(readFileSync(join(top, 'agent.toml'), 'utf8')) as { ingest: { address: string } };
      assert.equal(toml.ingest.address, `${IDN_ASCII}:9443`);
      assert.match(readFileSync(join(top, 'README.md'), 'utf8'), new RegExp(`for the appliance at \`${IDN}:9443 \\(${IDN_ASCII.replaceAll('.', '\\.')}:9443\\)\``));
      assert.equal(JSON.parse(readFileSync(join(top, 'manifest.json'), 'utf8')).ingest_address, `${IDN_ASCII}:9443`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
