import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Fastify from 'fastify';
import { pino } from 'pino';
import { AdminAccountService } from '../appliance/admin/accounts.ts';
import { DEFAULT_LOGIN_THROTTLE, LoginThrottle } from '../appliance/admin/login-throttle.ts';
import type { HttpContext } from '../appliance/http/context.ts';
import { loginRoute } from '../appliance/http/admin-auth.ts';
import { openStores } from '../appliance/store/index.ts';
import { CtOpsError } from '../common/errors.ts';

/** The lock an attempt meets, in whole seconds to wait; undefined when it may proceed (and is counted). */
function lockedFor(throttle: LoginThrottle, username: string, source: string, now: number): number | undefined {
  try {
    throttle.begin(username, source, now);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof CtOpsError && error.code === 'ERR_LOGIN_LOCKED', String(error));
    return error.details.retry_after_secs as number;
  }
}

describe('admin login throttle', () => {
  test('an account locks after 5 failures; each further failure doubles the lock, up to 15 minutes', () => {
    const throttle = new LoginThrottle();
    let now = 1_000_000;
    for (let failure = 1; failure <= 5; failure += 1) assert.equal(lockedFor(throttle, 'admin', `10.0.0.${failure}`, now), undefined);
    assert.equal(lockedFor(throttle, 'admin', '10.0.1.1', now), 1, 'locked 1 s, whatever the source');
    const waits: number[] = [];
    for (let failure = 6; failure <= 20; failure += 1) {
      now += 16 * 60_000;
      assert.equal(lockedFor(throttle, 'admin', `10.0.2.${failure}`, now), undefined, 'the lock has passed');
      waits.push(lockedFor(throttle, 'admin', '10.0.3.1', now)!);
    }
    assert.deepEqual(waits.slice(0, 5), [2, 4, 8, 16, 32]);
    assert.equal(Math.max(...waits), 900, 'capped at 15 minutes');
  });

  test('a source spraying many usernames locks after 20 failures, for every username', () => {
    const throttle = new LoginThrottle();
    for (let user = 0; user < 20; user += 1) assert.equal(lockedFor(throttle, `user-${user}`, '192.0.2.7', 0), undefined);
    assert.equal(lockedFor(throttle, 'admin', '192.0.2.7', 0), 1);
    assert.equal(lockedFor(throttle, 'admin', '192.0.2.8', 0), undefined, 'another source is not locked');
  });

  test('a proven password clears the account and the source; an attempt in flight counts until then', () => {
    const throttle = new LoginThrottle();
    for (let attempt = 0; attempt < 5; attempt += 1) throttle.begin('admin', '127.0.0.1', 0);
    assert.equal(lockedFor(throttle, 'admin', '127.0.0.1', 0), 1, 'five attempts in flight lock a sixth');
    throttle.succeeded('admin', '127.0.0.1');
    assert.equal(lockedFor(throttle, 'admin', '127.0.0.1', 0), undefined);
  });

  test('failures are forgotten after a quiet day, and the table never holds more than its bound', () => {
    const throttle = new LoginThrottle({ ...DEFAULT_LOGIN_THROTTLE, maxTracked: 50 });
    for (let attempt = 0; attempt < 4; attempt += 1) throttle.begin('admin', '127.0.0.1', 0);
    const dayLater = DEFAULT_LOGIN_THROTTLE.forgetAfterMs + 1;
    for (let attempt = 0; attempt < 4; attempt += 1) assert.equal(lockedFor(throttle, 'admin', '127.0.0.1', dayLater), undefined, 'counting starts again');
    // 200 usernames from 200 sources: 400 keys, of which the 50 most recent are kept.
    for (let user = 0; user < 200; user += 1) assert.equal(lockedFor(throttle, `spray-${user}`, `198.51.100.${user}`, dayLater), undefined);
    assert.equal(throttle.size, 50);
  });

  test("10,000 fresh usernames and sources never evict a running lock: account:admin stays locked while the table stays bounded", () => {
    const throttle = new LoginThrottle();
    for (let failure = 0; failure < DEFAULT_LOGIN_THROTTLE.accountFailures; failure += 1) throttle.begin('admin', '203.0.113.1', 0);
    for (let key = 0; key < 10_000; key += 1) lockedFor(throttle, `flush-${key}`, `198.51.${key >> 8}.${key & 255}`, 100);
    assert.equal(lockedFor(throttle, 'admin', '203.0.113.2', 200), 1, 'the lock survived the flood');
    assert.ok(throttle.size <= DEFAULT_LOGIN_THROTTLE.maxTracked);
  });

  test('when running locks fill the table, a new username or source is refused as locked, not tracked, until the first lock ends', () => {
    const policy = { ...DEFAULT_LOGIN_THROTTLE, accountFailures: 1, sourceFailures: 1, maxTracked: 10 };
    const throttle = new LoginThrottle(policy);
    // Each attempt locks its account and its source for 1 s: five attempts fill the ten slots with locks.
    for (let user = 0; user < 5; user += 1) assert.equal(lockedFor(throttle, `locked-${user}`, `192.0.2.${user}`, 0), undefined);
    assert.equal(lockedFor(throttle, 'newcomer', '192.0.2.99', 500), 1, 'no room without flushing a lock');
    assert.equal(throttle.size, 10);
    for (let user = 0; user < 5; user += 1) assert.equal(lockedFor(throttle, `locked-${user}`, '192.0.2.98', 500), 1, 'every lock is still there');
    assert.equal(lockedFor(throttle, 'newcomer', '192.0.2.99', 1_000), undefined, 'ended locks make room');
    assert.equal(throttle.size, 10);
  });
});

describe('the login route', () => {
  test('rotating IPv6 addresses inside one /64 is one source: it locks after 20 failures, while another /64 is not locked', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'ctops-login-source-'));
    const stores = openStores(join(dir, 'appliance.db'));
    // Only what loginRoute reads from the appliance's context: the account service.
    const accounts = new AdminAccountService({ store: stores.adminCredentials, throttle: new LoginThrottle(), log: pino({ level: 'silent' }), dataDir: dir });
    const app = Fastify();
    await app.register(loginRoute, { services: { accounts } } as unknown as HttpContext);
    t.after(async () => {
      await app.close();
      stores.close();
      rmSync(dir, { recursive: true, force: true });
    });
    const attempt = async (username: string, remoteAddress: string): Promise<string | undefined> => {
      const answer = await app.inject({ method: 'POST', url: '/api/v1/auth/login', remoteAddress, payload: { username, password: 'wrong' } });
      return (answer.json() as { code?: string }).code;
    };
    // A new username and a new address every time: no account reaches its own limit.
    for (let index = 1; index <= DEFAULT_LOGIN_THROTTLE.sourceFailures; index += 1) {
      assert.equal(await attempt(`spray-${index}`, `2001:db8:0:1::${index.toString(16)}`), 'ERR_LOGIN_FAILED');
    }
    assert.equal(await attempt('spray-next', '2001:db8:0:1:ffff:ffff:ffff:ffff'), 'ERR_LOGIN_LOCKED', 'the /64 is locked');
    assert.equal(await attempt('spray-next', '2001:db8:0:2::1'), 'ERR_LOGIN_FAILED', 'the next /64 is another source');
  });
});
