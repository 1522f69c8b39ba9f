import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { PresenceRegistry, type LiveSession, type OfflineReason } from '../appliance/presence/registry.ts';
import { hostStatus } from '../appliance/hosts/status.ts';

function fakeSession(agentId: string): LiveSession & { closedWith: Array<CtOpsError | undefined> } {
  const closedWith: Array<CtOpsError | undefined> = [];
  return { agentId, closedWith, send: async () => true, close: (error) => closedWith.push(error) };
}

test('a newer stream replaces an older one without reporting the host offline', () => {
  const offline: Array<[string, OfflineReason]> = [];
  const registry = new PresenceRegistry((agentId, reason) => offline.push([agentId, reason]));
  const older = fakeSession('hst_a');
  const newer = fakeSession('hst_a');
  registry.attach(older, 30);
  registry.attach(newer, 30);
  assert.deepEqual(older.closedWith, [undefined]);
  registry.detach(older, 'stream-closed');
  assert.deepEqual(offline, []);
  assert.ok(registry.isStreaming('hst_a'));
  registry.detach(newer, 'stream-closed');
  assert.deepEqual(offline, [['hst_a', 'stream-closed']]);
  assert.equal(registry.isStreaming('hst_a'), false);
});

test('disconnecting a revoked host closes its stream with the error and reports it offline once', () => {
  const offline: OfflineReason[] = [];
  const registry = new PresenceRegistry((_agentId, reason) => offline.push(reason));
  const session = fakeSession('hst_b');
  registry.attach(session, 30);
  const error = new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'revoked');
  assert.equal(registry.disconnect('hst_b', error, 'revoked'), true);
  registry.detach(session, 'stream-closed');
  assert.deepEqual(session.closedWith, [error]);
  assert.deepEqual(offline, ['revoked']);
  assert.equal(registry.disconnect('hst_b', error, 'revoked'), false);
});

test('host status combines approval with live presence', () => {
  assert.equal(hostStatus({ approval: 'active', streaming: true, lastHeartbeatAt: 1, deleted: false }), 'online');
  assert.equal(hostStatus({ approval: 'active', streaming: false, lastHeartbeatAt: 1, deleted: false }), 'offline');
  assert.equal(hostStatus({ approval: 'active', streaming: false, lastHeartbeatAt: null, deleted: false }), 'never-connected');
  assert.equal(hostStatus({ approval: 'active', streaming: true, lastHeartbeatAt: 1, deleted: true }), 'deleted');
  assert.equal(hostStatus({ approval: 'revoked', streaming: true, lastHeartbeatAt: 1, deleted: false }), 'revoked');
  assert.equal(hostStatus({ approval: 'pending', streaming: false, lastHeartbeatAt: null, deleted: false }), 'pending');
});
