/** The audit log's action names and its flood gate, without a process. */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import pino from 'pino';
import { auditAction } from '../appliance/audit/action.ts';
import { AuditFloodGate } from '../appliance/audit/flood-gate.ts';

test('actions are named from the method and route pattern: the verb in the path or from the method, the console named as the API it mirrors', () => {
  const named: Array<[string, string, string | undefined]> = [
    ['POST', '/api/v1/hosts/:id/approve', 'hosts.approve'],
    ['POST', '/console/hosts/:id/approve', 'hosts.approve'],
    ['DELETE', '/api/v1/hosts/:id', 'hosts.delete'],
    ['POST', '/console/hosts/:id/delete', 'hosts.delete'],
    ['POST', '/api/v1/tokens', 'tokens.create'],
    ['POST', '/api/v1/tokens/:id/revoke', 'tokens.revoke'],
    ['GET', '/api/v1/bundles/:id', 'bundles.read'],
    ['PATCH', '/api/v1/settings/inventory', 'settings.inventory.update'],
    ['PUT', '/api/v1/releases/minimum', 'releases.minimum.update'],
    ['POST', '/api/v1/rollouts/current/pause', 'rollouts.current.pause'],
    ['POST', '/api/v1/certs/rotate-ca', 'certs.rotate-ca'],
    ['POST', '/api/v1/admins/:username/reset-password', 'admins.reset-password'],
    ['POST', '/api/v1/auth/login', 'auth.login'],
    ['POST', '/console/login', 'auth.login'],
    ['POST', '/console/logout', 'auth.logout'],
    ['POST', '/console/password', 'auth.password'],
    ['GET', '/console', 'overview.read'],
    ['GET', '/api/v1/audit', 'audit.read'],
    ['GET', '/api/v1/audit/export', 'audit.export.read'],
    ['GET', '/healthz', undefined],
    ['GET', '/agent/v1/releases/:version/:file', undefined],
  ];
  for (const [method, pattern, action] of named) assert.equal(auditAction(method, pattern), action, `${method} ${pattern}`);
});

test('the flood gate admits 30 refusals per source and clock minute, counts the rest, and says so in one line per source once the minute is over', () => {
  const lines: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'warn' }, new Writable({
    write: (chunk: Buffer, _encoding, done) => {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  }));
  const gate = new AuditFloodGate(log);
  const minute = 29_000_000 * 60_000;
  try {
    const admitted = Array.from({ length: 500 }, (_, index) => gate.admit('192.0.2.7', minute + index * 100)).filter(Boolean).length;
    assert.equal(admitted, 30);
    assert.equal(gate.admit('192.0.2.8', minute + 59_999), true, 'another source has its own budget');
    assert.equal(lines.length, 0, 'nothing logged per refusal, nor before the window is over');
    assert.equal(gate.admit('192.0.2.7', minute + 60_000), true, 'the next minute, a new budget');
    assert.equal(lines.length, 1);
    assert.deepEqual({ msg: lines[0]!.msg, source: lines[0]!.source, dropped: lines[0]!.dropped }, { msg: 'audit events not recorded', source: '192.0.2.7', dropped: 470 });
  } finally {
    gate.close();
  }
});
