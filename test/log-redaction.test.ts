import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { Logger } from 'pino';
import { createLogger as agentLogger } from '../agent/log/logger.ts';
import { createLogger as applianceLogger } from '../appliance/lib/logger.ts';
import { readTomlConfigFile } from '../common/config-file.ts';
import { CtOpsError } from '../common/errors.ts';
import { REDACTED, SECRET_FIELD_NAMES } from '../common/log-redaction.ts';

/** A logger of one side writing into `lines` (each a JSON event). */
type MakeLogger = (level: string, destination: Writable) => Logger;

function capture(make: MakeLogger): { log: Logger; events: () => Record<string, any>[]; text: () => string } {
  const lines: string[] = [];
  const log = make('info', new Writable({ write: (chunk, _encoding, done) => (lines.push(String(chunk)), done()) }));
  return { log, events: () => lines.map((line) => JSON.parse(line)), text: () => lines.join('') };
}

const SIDES: readonly [string, MakeLogger][] = [
  ['appliance', applianceLogger],
  ['agent', agentLogger],
];

for (const [side, make] of SIDES) {
  test(`the ${side} logger redacts every listed secret field at the top level, one level down and in request headers`, () => {
    const { log, events, text } = capture(make);
    for (const name of SECRET_FIELD_NAMES) {
      const secret = `leak-${side}-${name}-top`;
      const nested = `leak-${side}-${name}-nested`;
      log.info({ [name]: secret, config: { [name]: nested }, host_id: 'hst_kept' }, 'event');
    }
    log.info({ req: { method: 'GET', headers: { authorization: 'Bearer leak-header', cookie: 'sid=leak-cookie', host: 'kept.example' } } }, 'request');
    log.info({ res: { statusCode: 200, headers: { 'set-cookie': 'sid=leak-set-cookie' } } }, 'response');
    assert.ok(!text().includes('leak-'), `no secret value reaches the ${side} log: ${text().match(/.{0,60}leak-.{0,40}/)?.[0]}`);
    const all = events();
    SECRET_FIELD_NAMES.forEach((name, index) => {
      const event = all[index]!;
      assert.equal(event[name], REDACTED, `${name} at the top level`);
      assert.equal(event.config[name], REDACTED, `${name} one level down`);
      assert.equal(event.host_id, 'hst_kept', 'other fields stay');
      assert.equal(event.msg, 'event');
    });
    const request = all[SECRET_FIELD_NAMES.length]!;
    assert.deepEqual(request.req.headers, { authorization: REDACTED, cookie: REDACTED, host: 'kept.example' });
    assert.deepEqual(all[SECRET_FIELD_NAMES.length + 1]!.res.headers, { 'set-cookie': REDACTED });
  });
}

test('the list names every secret either side is known to hold near its log calls', () => {
  for (const name of ['token', 'org_token', 'secret', 'password', 'passphrase', 'private_key', 'jwt', 'authorization', 'cookie', 'database_url']) {
    assert.ok((SECRET_FIELD_NAMES as readonly string[]).includes(name), name);
  }
});

for (const [side, make] of SIDES) {
  test(`the ${side} logger censors secrets in real objects at any depth: TLS options, a request body, CtOpsErrors with details and a TOML cause, database URLs`, () => {
    const { log, text } = capture(make);
    const dir = mkdtempSync(join(tmpdir(), 'ct-ops-redaction-'));
    try {
      const configPath = join(dir, 'agent.toml');
      writeFileSync(configPath, '[enrolment]\norg_token = "tok_leakTomlSecretValue"\naddress = = "x"\n');
      let parseError: unknown;
      try {
        readTomlConfigFile(configPath, 'agent');
      } catch (error) {
        parseError = error;
      }
      assert.ok(parseError instanceof CtOpsError);
      const tls = { cert: '-----BEGIN CERTIFICATE-----kept', key: 'leak-tls-key', keyPem: 'leak-key-pem', serverKeyPem: 'leak-server-key-pem' };
      log.info({ tls, options: { nested: { deeper: tls } } }, 'tls options');
      log.info({ req: { headers: { Authorization: 'Bearer leak-capital', 'proxy-authorization': 'Basic leak-proxy' }, body: { token_secret: 'leak-body-secret', list: [{ token: 'leak-in-array' }], deep: { a: { b: { c: { api_key: 'leak-deep-api-key' } } } } } } }, 'request');
      log.info({ accessToken: 'leak-access', adminApiToken: 'leak-admin-api', enrolmentToken: 'leak-enrolment', secrets: ['kept', { password: 'leak-array-password' }] }, 'names');
      const detailed = new CtOpsError('ERR_INVALID_ARGUMENT', 'refused', { token_secret: 'leak-details-secret', org_token: 'leak-details-org-token', database_url: 'postgres://u:leak-details-url@h/d' });
      log.error({ err: detailed }, 'detailed error');
      log.error(detailed, 'error as the first argument');
      log.error({ err: parseError }, 'config error');
      log.info({ database: 'postgres://ctops:leak-db-password@db.example/ctops', postgres: { url: 'postgresql://ctops:leak-url-password@db.example:5432/ctops' } }, 'database');
      log.error({ err: new Error('connect failed for postgres://ctops:leak-message-password@db.example/ctops') }, 'url in a message');
      log.child({ token: 'leak-binding' }).info('child');
      // A child's bindings at any depth, and a grandchild's: not events, redacted when the child is made.
      log.child({ peer: { tls: { key: 'leak-binding-deep' }, url: 'postgres://u:leak-binding-url@h/d' }, host_id: 'hst_child_kept' })
        .child({ auth: { password: 'leak-grandchild' } })
        .info('grandchild');
      const output = text();
      assert.ok(!output.includes('leak'), `no secret reaches the ${side} log: ${output.match(/.{0,80}leak.{0,40}/i)?.[0]}`);
      assert.ok(!output.includes('tok_'), 'the TOML code frame lost its org_token value');
      assert.match(output, /BEGIN CERTIFICATE-----kept/, 'public material stays');
      assert.match(output, /"code":"ERR_CONFIG_INVALID"/, 'the error is still described');
      assert.match(output, /postgres:\/\/ctops:\[redacted\]@db\.example\/ctops/, 'a URL keeps its host and user');
      assert.match(output, /"kept"/);
      assert.match(output, /"host_id":"hst_child_kept".*"grandchild"/, 'a child keeps its other bindings');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
