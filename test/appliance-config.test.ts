import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { loadApplianceConfig } from '../appliance/config/load.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-appliance-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

const isConfigError = (code: string, pattern: RegExp) => (error: unknown) =>
  error instanceof CtOpsError && error.code === code && pattern.test(error.message);

test('flags beat environment variables, which beat the TOML file, which beats the defaults', () => {
  const path = file('a.toml', 'grpc_port = 1001\nhttp_port = 2001\nlisten = "127.0.0.2"\nsans = ["file.example"]\n');
  const config = loadApplianceConfig({
    file: path,
    env: { CT_OPS_APPLIANCE_HTTP_PORT: '2002', CT_OPS_APPLIANCE_LISTEN: '127.0.0.3' },
    flags: { listen: '127.0.0.4' },
  });
  assert.equal(config.grpcPort, 1001);
  assert.equal(config.httpPort, 2002);
  assert.equal(config.listen, '127.0.0.4');
  assert.deepEqual(config.sans, ['file.example']);
  assert.equal(config.jwtTtlSecs, 86_400);
  assert.equal(config.pendingPollSecs, 30);
  assert.ok(Object.isFrozen(config));
});

test('malformed TOML, unknown keys, wrong types and out-of-range values are refused with the place named', () => {
  assert.throws(() => loadApplianceConfig({ file: file('b.toml', 'grpc_port = = 1'), env: {}, flags: {} }), isConfigError('ERR_CONFIG_INVALID', /b\.toml: not valid TOML/));
  assert.throws(() => loadApplianceConfig({ file: file('c.toml', 'grcp_port = 1'), env: {}, flags: {} }), isConfigError('ERR_CONFIG_INVALID', /unknown setting "grcp_port"/));
  assert.throws(() => loadApplianceConfig({ file: file('d.toml', 'grpc_port = "9443"'), env: {}, flags: {} }), isConfigError('ERR_CONFIG_INVALID', /grpc_port: expected an integer/));
  assert.throws(() => loadApplianceConfig({ env: { CT_OPS_APPLIANCE_GRPC_PORT: '70000' }, flags: {} }), isConfigError('ERR_CONFIG_INVALID', /CT_OPS_APPLIANCE_GRPC_PORT: expected an integer from 0 to 65535/));
  assert.throws(() => loadApplianceConfig({ env: {}, flags: { log_level: 'loud' } }), isConfigError('ERR_CONFIG_INVALID', /log_level/));
  assert.throws(() => loadApplianceConfig({ file: join(dir, 'missing.toml'), env: {}, flags: {} }), isConfigError('ERR_CONFIG_UNREADABLE', /missing\.toml/));
});
