import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PRODUCT_VERSION } from '../common/version.ts';
import { normaliseArgs, parseCli } from '../agent/cli/args.ts';

function parse(...argv: string[]) {
  const output = { out: '', err: '' };
  const request = parseCli(argv, { out: (text) => (output.out += text), err: (text) => (output.err += text) });
  return { request, ...output };
}

test('Go-style single-dash long flags are accepted as the spec’s service unit writes them', () => {
  assert.deepEqual(normaliseArgs(['-config', '/etc/ct-ops/agent.toml', '-check']), ['--config', '/etc/ct-ops/agent.toml', '--check']);
  assert.deepEqual(normaliseArgs(['-config=/x.toml']), ['--config=/x.toml']);
  assert.deepEqual(normaliseArgs(['--config', 'a', '-h']), ['--config', 'a', '-h']);
  assert.deepEqual(normaliseArgs(['--', '-config']), ['--', '-config'], 'nothing after -- is touched');
});

test('-config and --config both name the file; the default is /etc/ct-ops/agent.toml', () => {
  assert.deepEqual(parse('-config', '/a.toml').request, { kind: 'run', options: { configFile: '/a.toml', check: false } });
  assert.deepEqual(parse('--config', '/b.toml', '--check').request, { kind: 'run', options: { configFile: '/b.toml', check: true } });
  assert.deepEqual(parse().request, { kind: 'run', options: { configFile: '/etc/ct-ops/agent.toml', check: false } });
});

test('--help and --version print and exit 0; unknown flags and stray arguments exit 64', () => {
  const help = parse('--help');
  assert.deepEqual(help.request, { kind: 'exit', exitCode: 0 });
  assert.match(help.out, /Exit codes:[\s\S]*77 {2}an admin revoked/);
  const version = parse('-version');
  assert.deepEqual(version.request, { kind: 'exit', exitCode: 0 });
  assert.equal(version.out.trim(), PRODUCT_VERSION);
  assert.deepEqual(parse('-bogus').request, { kind: 'exit', exitCode: 64 });
  assert.deepEqual(parse('extra').request, { kind: 'exit', exitCode: 64 });
  assert.deepEqual(parse('-config').request, { kind: 'exit', exitCode: 64 });
});

test('the logger writes one JSON event per line with the level as a word, and redacts secrets passed by mistake', async () => {
  const { Writable } = await import('node:stream');
  const { createLogger, logLevelFromEnv } = await import('../agent/log/logger.ts');
  const lines: string[] = [];
  const log = createLogger('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  log.info({ org_token: 'tok_leak', config: { jwt: 'a.b.c' }, authorization: 'Bearer x' }, 'oops');
  assert.equal(lines.length, 1);
  const event = JSON.parse(lines[0] ?? '{}');
  assert.equal(event.level, 'info');
  assert.equal(event.msg, 'oops');
  assert.ok(!lines[0]?.includes('tok_leak') && !lines[0]?.includes('a.b.c') && !lines[0]?.includes('Bearer x'));
  assert.equal(logLevelFromEnv({}), 'info');
  assert.equal(logLevelFromEnv({ CT_OPS_LOG_LEVEL: 'DEBUG' }), 'debug');
  assert.throws(() => logLevelFromEnv({ CT_OPS_LOG_LEVEL: 'loud' }), { code: 'ERR_CONFIG_INVALID' });
});
