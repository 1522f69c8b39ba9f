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

test('database: unset is the SQLite file in data_dir; a postgres:// URL comes from the flag, CT_OPS_APPLIANCE_DATABASE or the TOML file, and is shown only without its password', () => {
  assert.deepEqual(loadApplianceConfig({ env: {}, flags: {} }).database, { kind: 'sqlite' });
  assert.equal(loadApplianceConfig({ env: {}, flags: {} }).databasePoolSize, 10);
  assert.equal(loadApplianceConfig({ env: { CT_OPS_APPLIANCE_DATABASE_POOL_SIZE: '25' }, flags: {} }).databasePoolSize, 25);
  assert.throws(() => loadApplianceConfig({ env: {}, flags: { database_pool_size: '0' } }), isConfigError('ERR_CONFIG_INVALID', /--database-pool-size: expected an integer from 1 to 100/));
  const fromFile = loadApplianceConfig({ file: file('db.toml', 'database = "postgres://ctops:s3cret@db.example:5433/fleet?sslmode=verify-full"\n'), env: {}, flags: {} }).database;
  assert.deepEqual(fromFile, { kind: 'postgres', url: 'postgres://ctops:s3cret@db.example:5433/fleet?sslmode=verify-full', display: 'postgres://ctops:***@db.example:5433/fleet?sslmode=verify-full' });
  const fromEnv = loadApplianceConfig({ file: file('db2.toml', 'database = "postgres://a:b@file/x"\n'), env: { CT_OPS_APPLIANCE_DATABASE: 'postgresql://env@db/fleet' }, flags: {} }).database;
  assert.deepEqual(fromEnv, { kind: 'postgres', url: 'postgresql://env@db/fleet', display: 'postgresql://env@db/fleet' });
  const fromFlag = loadApplianceConfig({ env: { CT_OPS_APPLIANCE_DATABASE: 'postgres://env@db/fleet' }, flags: { database: 'postgres://flag:pw@db/fleet' } }).database;
  assert.equal(fromFlag.kind === 'postgres' && fromFlag.display, 'postgres://flag:***@db/fleet');
});

test('database: another scheme, a URL without host or database, or no URL at all is refused naming the setting and never repeating the password', () => {
  const refused = (value: string, pattern: RegExp) => assert.throws(
    () => loadApplianceConfig({ env: {}, flags: { database: value } }),
    (error: unknown) => isConfigError('ERR_CONFIG_INVALID', pattern)(error) && !(error as Error).message.includes('hunter2'),
    value,
  );
  refused('mysql://root:hunter2@db/fleet', /--database: the scheme "mysql:" is not a database/);
  refused('postgres://root:hunter2@db', /--database: a PostgreSQL URL names its host and database: .*root:\*\*\*@db/);
  refused('db.example fleet hunter2', /--database: not a URL/);
  assert.throws(() => loadApplianceConfig({ file: file('db3.toml', '[database]\nurl = "postgres://u:hunter2@db/x"\n'), env: {}, flags: {} }), (error: unknown) => isConfigError('ERR_CONFIG_INVALID', /database: expected a string, got a table/)(error) && !(error as Error).message.includes('hunter2'));
});
