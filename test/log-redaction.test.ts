import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { Logger } from 'pino';
import { createLogger as agentLogger } from '../agent/log/logger.ts';
import { createLogger as applianceLogger } from '../appliance/lib/logger.ts';
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
