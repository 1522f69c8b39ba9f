import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { parseIngestAddress } from '../agent/config/address.ts';
import { DEFAULT_DATA_DIR, loadAgentConfig } from '../agent/config/load.ts';
import { reloadConfig } from '../agent/config/reload.ts';

const CA_PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function withDir(run: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-agent-config-'));
  try {
    run(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function writeConfig(dir: string, text: string): string {
  const file = join(dir, 'agent.toml');
  writeFileSync(file, text);
  return file;
}

function expectCode(run: () => unknown, code: CtOpsError['code'], pattern: RegExp): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof CtOpsError, `expected CtOpsError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.exitCode, 78);
    assert.match(error.message, pattern);
    return true;
  });
}

const SPEC_EXAMPLE = (dir: string) => `
[ingest]
address = "ingest.corp.example.com:9443"
ca_cert_file = "${join(dir, 'ca.crt')}"

[agent]
org_token = "tok_abc"
data_dir  = "${join(dir, 'data')}"
version   = "${PRODUCT_VERSION}"
heartbeat_interval_secs = 45

[agent.tags]
env = "prod"
team = "core"
`;

test("the spec's example configuration loads into a frozen, typed config", () => {
  withDir((dir) => {
    writeFileSync(join(dir, 'ca.crt'), CA_PEM);
    const { config, warnings } = loadAgentConfig({ file: writeConfig(dir, SPEC_EXAMPLE(dir)), env: {} });
    assert.deepEqual(warnings, []);
    assert.equal(config.ingest.addresses[0]!.target, 'ingest.corp.example.com:9443');
    assert.equal(config.ingest.addresses[0]!.host, 'ingest.corp.example.com');
    assert.equal(config.ingest.addresses[0]!.port, 9443);
    assert.equal(config.ingest.caCertFile, join(dir, 'ca.crt'));
    assert.equal(config.ingest.caPem, CA_PEM);
    assert.equal(config.orgToken, 'tok_abc');
    assert.equal(config.dataDir, join(dir, 'data'));
    assert.equal(config.heartbeatIntervalSecs, 45);
    assert.deepEqual(config.tags, { env: 'prod', team: 'core' });
    assert.ok(Object.isFrozen(config) && Object.isFrozen(config.ingest) && Object.isFrozen(config.tags));
  });
});

test('defaults apply: data_dir /var/lib/ct-ops/agent, interval 30 s, system roots, no token, no tags', () => {
  withDir((dir) => {
    const { config } = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\n'), env: {} });
    assert.equal(config.dataDir, DEFAULT_DATA_DIR);
    assert.equal(config.heartbeatIntervalSecs, 30);
    assert.equal(config.ingest.caCertFile, undefined);
    assert.equal(config.ingest.caPem, undefined);
    assert.equal(config.orgToken, '');
    assert.deepEqual(config.tags, {});
  });
});

test('[agent] install_bundle_id is the bundle the agent came from: a bundle id, \'\' when absent or empty, anything else ERR_CONFIG_INVALID', () => {
  withDir((dir) => {
    const load = (agent: string) => loadAgentConfig({ file: writeConfig(dir, `[ingest]\naddress = "h:1"\n[agent]\n${agent}`), env: {} });
    const { config, warnings } = load('install_bundle_id = "bnd_0123456789abcdef0123"\n');
    assert.deepEqual(warnings, [], 'a known key');
    assert.equal(config.installBundleId, 'bnd_0123456789abcdef0123');
    assert.equal(load('').config.installBundleId, '');
    assert.equal(load('install_bundle_id = ""\n').config.installBundleId, '');
    for (const bad of ['etk_0123456789abcdef0123', 'bnd_0123456789ABCDEF0123', 'bnd_0123', 'bnd_0123456789abcdef01234']) {
      expectCode(() => load(`install_bundle_id = "${bad}"\n`), 'ERR_CONFIG_INVALID', /\[agent\] install_bundle_id .* is not a bundle id/);
    }
    expectCode(() => load('install_bundle_id = 7\n'), 'ERR_CONFIG_INVALID', /\[agent\] install_bundle_id: expected a/);
  });
});

test('an empty ca_cert_file means the system roots', () => {
  withDir((dir) => {
    const { config } = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\nca_cert_file = ""\n'), env: {} });
    assert.equal(config.ingest.caCertFile, undefined);
  });
});

test('environment variables override the file', () => {
  withDir((dir) => {
    writeFileSync(join(dir, 'ca.crt'), CA_PEM);
    writeFileSync(join(dir, 'env-ca.crt'), CA_PEM);
    const env = {
      CT_OPS_INGEST_ADDRESS: 'other.example.com:7000',
      CT_OPS_INGEST_CA_CERT: join(dir, 'env-ca.crt'),
      CT_OPS_ORG_TOKEN: 'tok_env',
      CT_OPS_DATA_DIR: join(dir, 'env-data'),
    };
    const { config } = loadAgentConfig({ file: writeConfig(dir, SPEC_EXAMPLE(dir)), env });
    assert.equal(config.ingest.addresses[0]!.target, 'other.example.com:7000');
    assert.equal(config.ingest.caCertFile, join(dir, 'env-ca.crt'));
    assert.equal(config.orgToken, 'tok_env');
    assert.equal(config.dataDir, join(dir, 'env-data'));
  });
});

test('relative paths in the file resolve against the file’s directory', () => {
  withDir((dir) => {
    writeFileSync(join(dir, 'ca.crt'), CA_PEM);
    const { config } = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\nca_cert_file = "ca.crt"\n[agent]\ndata_dir = "state"\n'), env: {} });
    assert.equal(config.ingest.caCertFile, join(dir, 'ca.crt'));
    assert.equal(config.dataDir, join(dir, 'state'));
  });
});

test('malformed TOML is ERR_CONFIG_INVALID naming the file', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest\naddress = "h:1"\n');
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', new RegExp(`${file}: not valid TOML`));
  });
});

test('a missing config file is ERR_CONFIG_UNREADABLE', () => {
  withDir((dir) => {
    expectCode(() => loadAgentConfig({ file: join(dir, 'absent.toml'), env: {} }), 'ERR_CONFIG_UNREADABLE', /cannot read the agent configuration/);
  });
});

test('unknown keys and tables are warnings, not errors', () => {
  withDir((dir) => {
    const { config, warnings } = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\nport = 3\n[agent]\nfoo = 1\n[extra]\nx = 1\n'), env: {} });
    assert.equal(config.ingest.addresses[0]!.target, 'h:1');
    assert.equal(warnings.length, 3);
    assert.match(warnings.join('\n'), /unknown key "\[ingest\] port"/);
    assert.match(warnings.join('\n'), /unknown key "\[agent\] foo"/);
    assert.match(warnings.join('\n'), /unknown key "extra"/);
  });
});

test('a value of the wrong type names the file and key', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddress = "h:1"\n[agent]\nheartbeat_interval_secs = "30"\n');
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', /\[agent\] heartbeat_interval_secs: expected an integer/);
  });
});

test('tags must be a table of strings', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddress = "h:1"\n[agent.tags]\nrack = 4\n');
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', /\[agent\] tags: expected a table of string values/);
  });
});

for (const interval of [0, -5, 4, 3601, 1.5]) {
  test(`heartbeat_interval_secs = ${interval} is rejected (integer 5–3600 only)`, () => {
    withDir((dir) => {
      const file = writeConfig(dir, `[ingest]\naddress = "h:1"\n[agent]\nheartbeat_interval_secs = ${interval}\n`);
      expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', /heartbeat_interval_secs: expected an integer/);
    });
  });
}

test('interval bounds 5 and 3600 are accepted', () => {
  withDir((dir) => {
    for (const interval of [5, 3600]) {
      const file = writeConfig(dir, `[ingest]\naddress = "h:1"\n[agent]\nheartbeat_interval_secs = ${interval}\n`);
      assert.equal(loadAgentConfig({ file, env: {} }).config.heartbeatIntervalSecs, interval);
    }
  });
});

test('a missing ingest address is ERR_CONFIG_INVALID mentioning the env var', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[agent]\norg_token = "t"\n');
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', /\[ingest\] address is required.*CT_OPS_INGEST_ADDRESS/);
  });
});

test('an address without a port is rejected; so is a port out of range', () => {
  withDir((dir) => {
    expectCode(() => loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "ingest.example.com"\n'), env: {} }), 'ERR_CONFIG_INVALID', /\[ingest\] address: expected host:port/);
    expectCode(() => loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:70000"\n'), env: {} }), 'ERR_CONFIG_INVALID', /port must be from 1 to 65535/);
    expectCode(() => loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\n'), env: { CT_OPS_INGEST_ADDRESS: 'nope' } }), 'ERR_CONFIG_INVALID', /^CT_OPS_INGEST_ADDRESS: expected host:port/);
  });
});

test('IPv6 addresses need brackets', () => {
  const address = parseIngestAddress('[::1]:9443', 'x');
  assert.deepEqual([address.target, address.host, address.port, address.unicodeTarget, address.display], ['[::1]:9443', '::1', 9443, '[::1]:9443', '[::1]:9443']);
  assert.throws(() => parseIngestAddress('::1:9443', 'x'), /expected host:port/);
});

test('an unreadable CA file is ERR_CONFIG_UNREADABLE naming the file and key', () => {
  withDir((dir) => {
    const file = writeConfig(dir, `[ingest]\naddress = "h:1"\nca_cert_file = "${join(dir, 'missing.crt')}"\n`);
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_UNREADABLE', /\[ingest\] ca_cert_file: cannot read CA certificate .*missing\.crt/);
  });
});

test('a CA file without a PEM certificate is ERR_CONFIG_INVALID', () => {
  withDir((dir) => {
    writeFileSync(join(dir, 'ca.crt'), 'not a certificate');
    const file = writeConfig(dir, '[ingest]\naddress = "h:1"\nca_cert_file = "ca.crt"\n');
    expectCode(() => loadAgentConfig({ file, env: {} }), 'ERR_CONFIG_INVALID', /holds no PEM certificate/);
  });
});

test('a configured version other than the compiled one is accepted with a warning', () => {
  withDir((dir) => {
    const { config, warnings } = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "h:1"\n[agent]\nversion = "9.9.9"\n'), env: {} });
    assert.equal(config.configuredVersion, '9.9.9');
    assert.match(warnings.join('\n'), new RegExp(`"9\\.9\\.9" but this agent is ${PRODUCT_VERSION.replaceAll('.', '\\.')}`));
  });
});

test('a reload applies the new interval and names settings that need a restart', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddress = "h:1"\n[agent]\nheartbeat_interval_secs = 30\n');
    const current = loadAgentConfig({ file, env: {} }).config;
    writeConfig(dir, '[ingest]\naddress = "h2:1"\n[agent]\nheartbeat_interval_secs = 10\n');
    const result = reloadConfig(current, () => loadAgentConfig({ file, env: {} }));
    assert.ok(result.ok);
    assert.equal(result.config.heartbeatIntervalSecs, 10);
    assert.equal(result.config.ingest.addresses[0]!.target, 'h:1', 'the connection settings stay until a restart');
    assert.equal(result.message, 'heartbeat_interval_secs=10; restart the agent to apply ingest.address');
  });
});

test('an invalid config on reload is reported and the old config stays', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddress = "h:1"\n');
    const current = loadAgentConfig({ file, env: {} }).config;
    writeConfig(dir, '[ingest]\naddress = "h:1"\n[agent]\nheartbeat_interval_secs = 0\n');
    const result = reloadConfig(current, () => loadAgentConfig({ file, env: {} }));
    assert.equal(result.ok, false);
    assert.ok(!result.ok && result.error.code === 'ERR_CONFIG_INVALID');
    assert.match(result.message, /^ERR_CONFIG_INVALID: .*previous configuration stays in effect$/);
    assert.equal(current.heartbeatIntervalSecs, 30);
  });
});

test('[ingest] addresses lists several ingest addresses in order; address stays one; CT_OPS_INGEST_ADDRESS overrides either with one', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddresses = ["a.example:9443", " [::1]:9444 ", "b.example:1"]\n');
    const { config } = loadAgentConfig({ file, env: {} });
    assert.deepEqual(config.ingest.addresses.map((address) => address.target), ['a.example:9443', '[::1]:9444', 'b.example:1']);
    assert.ok(Object.isFrozen(config.ingest.addresses));
    const single = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddress = "a.example:9443"\n'), env: {} }).config;
    assert.deepEqual(single.ingest.addresses.map((address) => address.target), ['a.example:9443']);
    const overridden = loadAgentConfig({ file: writeConfig(dir, '[ingest]\naddresses = ["a.example:9443", "b.example:9443"]\n'), env: { CT_OPS_INGEST_ADDRESS: 'c.example:7000' } }).config;
    assert.deepEqual(overridden.ingest.addresses.map((address) => address.target), ['c.example:7000']);
  });
});

test('[ingest] address and addresses both set, neither, an empty or over-long list, a repeated entry and a bad entry are ERR_CONFIG_INVALID naming the key', () => {
  withDir((dir) => {
    const load = (toml: string) => () => loadAgentConfig({ file: writeConfig(dir, toml), env: {} });
    expectCode(load('[ingest]\naddress = "a.example:1"\naddresses = ["b.example:1"]\n'), 'ERR_CONFIG_INVALID', /\[ingest\] address and \[ingest\] addresses are both set/);
    expectCode(load('[agent]\n'), 'ERR_CONFIG_INVALID', /\[ingest\] address is required.*\[ingest\] addresses.*CT_OPS_INGEST_ADDRESS/);
    expectCode(load('[ingest]\naddresses = []\n'), 'ERR_CONFIG_INVALID', /\[ingest\] addresses: expected 1 to 16 host:port entries, got 0/);
    const seventeen = Array.from({ length: 17 }, (_, index) => `"h${index}.example:1"`).join(', ');
    expectCode(load(`[ingest]\naddresses = [${seventeen}]\n`), 'ERR_CONFIG_INVALID', /expected 1 to 16 host:port entries, got 17/);
    expectCode(load('[ingest]\naddresses = ["a.example:1", "B.example:2", "A.EXAMPLE:1"]\n'), 'ERR_CONFIG_INVALID', /\[ingest\] addresses\[2\]: a\.example:1 repeats addresses\[0\]/);
    expectCode(load('[ingest]\naddresses = ["a.example:1", "b.example"]\n'), 'ERR_CONFIG_INVALID', /\[ingest\] addresses\[1\]: expected host:port/);
    expectCode(load('[ingest]\naddresses = "a.example:1"\n'), 'ERR_CONFIG_INVALID', /\[ingest\] addresses: expected an array of non-empty strings/);
  });
});

test('a reordered or changed address list waits for a restart, named ingest.addresses', () => {
  withDir((dir) => {
    const file = writeConfig(dir, '[ingest]\naddresses = ["a.example:1", "b.example:1"]\n');
    const { config } = loadAgentConfig({ file, env: {} });
    writeConfig(dir, '[ingest]\naddresses = ["b.example:1", "a.example:1"]\n');
    const result = reloadConfig(config, () => loadAgentConfig({ file, env: {} }));
    assert.ok(result.ok);
    assert.equal(result.message, 'heartbeat_interval_secs=30; restart the agent to apply ingest.addresses');
    assert.deepEqual(result.config.ingest.addresses.map((address) => address.target), ['a.example:1', 'b.example:1']);
  });
});
