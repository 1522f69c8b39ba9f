import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomBytes, verify as verifyCrypto } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import nacl from 'tweetnacl';
import { pino } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import type { HeartbeatRequest, HeartbeatResponse, HostFacts } from '../common/proto.ts';
import { HeartbeatSession } from '../agent/heartbeat/session.ts';
import { TaskUpdateQueue } from '../agent/heartbeat/task-updates.ts';
import type { IngestTransport } from '../agent/transport/types.ts';
import { keyRotationProofPayload, successorProofPayload } from '../common/successor-proof.ts';
import { AgentJwtAuthority } from '../appliance/auth/agent-jwt.ts';
import { isSmallOrderKey, verifyAgentSignature } from '../appliance/enrolment/agent-signature.ts';
import { RegisterChallenges } from '../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest } from '../appliance/enrolment/register-input.ts';
import { register } from '../appliance/enrolment/register.ts';
import { createEnrolmentToken } from '../appliance/enrolment/tokens.ts';
import { NO_HOSTNAME, parseHostFacts } from '../appliance/hosts/facts.ts';
import { claimIdentity, credentialRefusal, IDENTITY_CONFLICT_RETRY_MS, IDENTITY_RESOLUTION_MAX_MS } from '../appliance/hosts/identity.ts';
import { approveAsReplacement } from '../appliance/hosts/replace.ts';
import { dismissIdentityConflict, resolveIdentity } from '../appliance/hosts/resolve.ts';
import { ensureJwtSigningKey } from '../appliance/pki/jwt-signing-key.ts';
import { CLAIM_HISTORY_MS, PresenceRegistry, type Claimant, type LiveSession } from '../appliance/presence/registry.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { HOST_EVENTS_KEPT } from '../appliance/store/host-events.ts';
import { openStores } from '../appliance/store/index.ts';
import { TaskService } from '../appliance/tasks/service.ts';
import { decodedRegister, newIdentity, signedRegister, type TestIdentity } from './helpers/ingest-client.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-identity-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

test('stream claims: a restart (A then B) is not alternation; A → B → A is; claims older than the history window are forgotten', () => {
  const registry = new PresenceRegistry(() => undefined);
  assert.equal(registry.recordClaim('hst_x', 'a', 0), false);
  assert.equal(registry.recordClaim('hst_x', 'a', 1_000), false, 'the same process reconnecting');
  assert.equal(registry.recordClaim('hst_x', 'b', 2_000), false, 'a restart: a new process');
  assert.equal(registry.recordClaim('hst_x', 'a', 3_000), true, 'the old process is back: two machines');
  assert.equal(registry.recordClaim('hst_y', 'a', 0), false);
  assert.equal(registry.recordClaim('hst_y', 'b', 1_000), false);
  assert.equal(registry.recordClaim('hst_y', 'a', 1_000 + CLAIM_HISTORY_MS + 1), false, 'a process back after the window is not taken for a clone');
});

test('HostFacts: strict on the identity fields; descriptive facts any machine may have (escapes, combining marks, no hostname) are made displayable, never refused', () => {
  const facts = {
    hostname: 'web-1', machine_fingerprint: 'a'.repeat(64), os: 'linux', os_version: '6.1.0', arch: 'x64', agent_version: '0.2.0',
    ip_addresses: ['10.0.0.5', 'fe80::1'], instance_id: '0123456789abcdef',
  };
  assert.equal(parseHostFacts(facts).hostname, 'web-1');
  const refused = (patch: Partial<typeof facts>, field: string) =>
    assert.throws(() => parseHostFacts({ ...facts, ...patch }), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INVALID_ARGUMENT' && error.details.field === field);
  refused({ instance_id: 'not-hex' }, 'host_facts.instance_id');
  refused({ machine_fingerprint: 'A'.repeat(64) }, 'host_facts.machine_fingerprint');
  const cleaned = (patch: Partial<typeof facts>) => parseHostFacts({ ...facts, ...patch });
  assert.equal(cleaned({ hostname: 'evil\u001b]0;pwned\u0007' }).hostname, 'evil\uFFFD]0;pwned\uFFFD');
  assert.equal(cleaned({ hostname: 'web\u001b[31mRED' }).hostname, 'web\uFFFD[31mRED');
  assert.equal(cleaned({ hostname: 'सर्वर' }).hostname, 'सर्वर', 'combining marks are letters of their script');
  assert.equal(cleaned({ hostname: '' }).hostname, NO_HOSTNAME);
  assert.equal(cleaned({ hostname: 'a\u202eb' }).hostname, 'a\uFFFDb', 'bidirectional overrides');
  assert.equal(cleaned({ hostname: 'x'.repeat(300) }).hostname.length, 253);
  assert.equal(cleaned({ hostname: `${'x'.repeat(252)}😀` }).hostname, 'x'.repeat(252), 'no half surrogate pair left by the cut');
  assert.equal(cleaned({ os_version: '6.1\t-rt' }).osVersion, '6.1\uFFFD-rt');
  assert.equal(cleaned({ os: 'Linux!' }).os, 'unknown');
  assert.deepEqual(cleaned({ ip_addresses: ['<script>', '10.0.0.1'] }).ipAddresses, ['10.0.0.1']);
  assert.equal(cleaned({ ip_addresses: Array.from({ length: 40 }, (_, index) => `10.0.0.${index}`) }).ipAddresses.length, 16);
});

test('the agent sends its host facts on the first heartbeat of each stream and afterwards only when they change', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const sent: HeartbeatRequest[] = [];
  const transport = {
    openHeartbeat: () => ({ send: (request: HeartbeatRequest) => sent.push(request), close: () => undefined }),
  } as unknown as IngestTransport;
  let hostname = 'web-1';
  const facts = (): HostFacts => ({ hostname, machine_fingerprint: 'a'.repeat(64), os: 'linux', os_version: '6.1', arch: 'x64', agent_version: '0.2.0', ip_addresses: [], instance_id: '0123456789abcdef' });
  const session = () => new HeartbeatSession({
    transport, credential: { agentId: 'hst_1', jwt: 'j', jwtExpiresUnix: undefined }, intervalSecs: 5, agentVersion: '0.2.0',
    vitals: () => ({ cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1 }), updates: new TaskUpdateQueue(), now: Date.now, log,
    events: { onFirstAck: () => undefined, onCredential: () => undefined, onTask: () => undefined, onCancel: () => undefined, onKeyRotation: () => undefined, onTrustBundle: () => undefined, onDelivered: () => undefined, onEnd: () => undefined },
    facts,
  });
  const first = session();
  t.mock.timers.tick(5_000);
  hostname = 'web-2';
  t.mock.timers.tick(5_000);
  first.close();
  session().close();
  assert.deepEqual(sent.map((request) => request.host_facts?.hostname ?? null), ['web-1', null, 'web-2', 'web-2']);
});

/** A store with one enrolled active host, and the services around it. */
async function world(name: string) {
  const stores = openStores(join(dir, `${name}.db`));
  const org = await stores.organisations.ensureDefault(Date.now());
  const jwtKey = await ensureJwtSigningKey(dir);
  const jwt = new AgentJwtAuthority(jwtKey, 3600);
  const cluster = await singleInstance(stores, log);
  const presenceService = new PresenceService({ stores, log, cluster, requeueTasks: () => undefined });
  const presence = presenceService.registry;
  const tasks = new TaskService({ stores, presence, log, cluster });
  const deps = { stores, jwt, challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log, presence, services: { tasks, presence: presenceService } };
  /** The host workflows' deps: the same parts, with presence as the service that owns it. */
  const hostDeps = { ...deps, presence: presenceService, tasks };
  const now = Date.now();
  const created = await createEnrolmentToken(stores, org.id, { label: 't', expiresInMs: 60_000, maxUses: 5, autoApprove: true, tags: { site: 'a' }, createdBy: 'test', source: 'admin', metadata: {} }, now);
  const original = newIdentity('web-1');
  const enrolled = await register(parseRegisterRequest(decodedRegister(signedRegister(original, created.secret, {}, now))), deps, now);
  return { stores, deps, hostDeps, presence, original, hostId: enrolled.agent_id as string, now, close: () => stores.close() };
}

function claimant(instanceId: string, machineFingerprint: string): Claimant {
  return { instanceId, machineFingerprint, hostname: 'web-1', source: '127.0.0.1' };
}

function streamOf(agentId: string, who: Claimant): LiveSession {
  return { agentId, claimant: who, send: async () => true, close: () => undefined };
}

test('a second machine claiming a live identity is refused with a retry hint and flags the host once; the holder keeps it, tasks are held', async () => {
  const { stores, deps, presence, hostId, now, close } = await world('flag');
  const first = claimant('aaaaaaaaaaaaaaaa', '1'.repeat(64));
  const host = (await stores.hosts.get(hostId))!;
  assert.equal(await claimIdentity(deps, host, first, now), undefined);
  presence.attach(streamOf(hostId, first), 30);
  const refusal = await claimIdentity(deps, host, claimant('bbbbbbbbbbbbbbbb', '2'.repeat(64)), now + 1);
  assert.equal(refusal?.code, 'ERR_HOST_IDENTITY_CONFLICT');
  assert.equal(refusal?.details.retry_after_ms, IDENTITY_CONFLICT_RETRY_MS);
  const flagged = (await stores.hosts.get(hostId))!;
  assert.equal(flagged.identityState, 'conflict');
  assert.equal((await stores.hostClaimants.list(hostId)).length, 2);
  assert.equal((await claimIdentity(deps, flagged, claimant('bbbbbbbbbbbbbbbb', '2'.repeat(64)), now + 2))?.code, 'ERR_HOST_IDENTITY_CONFLICT', 'still refused');
  assert.equal(await claimIdentity(deps, flagged, first, now + 3), undefined, 'the holder reconnecting is not');
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-conflict', 10)).length, 1, 'one audit event, not one per attempt');
  const { task } = await deps.services.tasks.create(flagged.orgId, { type: 'config_reload', hostId, by: 'test' }, now);
  assert.equal(await deps.services.tasks.dispatch(hostId), 0, 'no task goes to a flagged host');
  assert.equal((await stores.tasks.get(task.id))?.state, 'queued');
  close();
});

test('a retired clone enrols its new key once, as a pending host with the old tags, and only with a valid proof by the retired key', async () => {
  const { stores, deps, hostDeps, presence, original, hostId, now, close } = await world('successor');
  const kept = claimant('aaaaaaaaaaaaaaaa', '1'.repeat(64));
  presence.attach(streamOf(hostId, kept), 30);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant('bbbbbbbbbbbbbbbb', '2'.repeat(64)), now);
  const successorOf = (identity: TestIdentity, signer: nacl.SignKeyPair, at: number) =>
    register(parseRegisterRequest(decodedRegister({
      ...signedRegister(identity, '', {}, at),
      predecessor_public_key: Buffer.from(original.keyPair.publicKey),
      predecessor_signature: Buffer.from(nacl.sign.detached(successorProofPayload(identity.keyPair.publicKey), signer.secretKey)),
    })), deps, at);
  const refusedWith = (code: string) => (error: unknown) => error instanceof CtOpsError && error.code === code;

  await assert.rejects(successorOf(newIdentity('clone'), original.keyPair, now), refusedWith('ERR_SUCCESSOR_REFUSED'), 'not before an admin resolved the conflict');
  await resolveIdentity(hostDeps, (await stores.hosts.get(hostId))!.orgId, hostId, kept.instanceId, 'admin', now);
  await assert.rejects(successorOf(newIdentity('clone'), nacl.sign.keyPair(), now), refusedWith('ERR_SUCCESSOR_REFUSED'), 'a proof by another key');
  const clone = newIdentity('clone');
  const enrolled = await successorOf(clone, original.keyPair, now);
  assert.equal(enrolled.status, 'AGENT_STATUS_PENDING');
  const successor = (await stores.hosts.get(enrolled.agent_id as string))!;
  assert.deepEqual(successor.tags, { site: 'a' });
  assert.equal(successor.approval, 'pending', 'the token auto-approves, the successor still waits for an admin');
  await assert.rejects(successorOf(newIdentity('third'), original.keyPair, now + 1), refusedWith('ERR_SUCCESSOR_REFUSED'), 'the proof admits one machine per retired claimant');
  assert.equal((await stores.hosts.get(hostId))!.identityState, null);
  close();
});


test('resolving rotates the kept machine\'s key: only the offered nonce with a proof by the current key moves the host to the new key; the old key and JWTs issued before are retired, a replay changes nothing, the clone still re-enrols once', async () => {
  const { stores, deps, hostDeps, presence, original, hostId, now, close } = await world('rotation');
  const shared = '1'.repeat(64);
  const kept = claimant('aaaaaaaaaaaaaaaa', shared);
  const sent: HeartbeatResponse[] = [];
  presence.attach({ ...streamOf(hostId, kept), send: async (message) => sent.push(message) > 0 }, 30);
  // A cloned VM (same fingerprint) alternating with the original: A → B → A, then resolved by instance.
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant('bbbbbbbbbbbbbbbb', shared), now);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now);
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant('bbbbbbbbbbbbbbbb', shared), now))?.code, 'ERR_HOST_IDENTITY_CONFLICT');
  const orgId = (await stores.hosts.get(hostId))!.orgId;
  await resolveIdentity(hostDeps, orgId, hostId, kept.instanceId, 'admin', now);
  const nonce = sent.find((message) => message.rotate_key)?.rotate_key?.rotation_nonce as Buffer;
  assert.equal(nonce?.length, 32, 'the kept machine\'s live stream is offered the rotation');
  assert.deepEqual((await stores.hosts.get(hostId))!.identityRotationNonceSha256, createHash('sha256').update(nonce).digest(), 'only the hash is stored');

  const rotationOf = (identity: TestIdentity, oldKey: nacl.SignKeyPair, rotationNonce: Buffer, at: number, payload = keyRotationProofPayload(identity.keyPair.publicKey, rotationNonce)) =>
    decodedRegister({
      ...signedRegister(identity, '', {}, at),
      predecessor_public_key: Buffer.from(oldKey.publicKey),
      predecessor_signature: Buffer.from(nacl.sign.detached(payload, oldKey.secretKey)),
      rotation_nonce: rotationNonce,
    });
  const refusedWith = (code: string) => (error: unknown) => error instanceof CtOpsError && error.code === code;
  const next = newIdentity('web-1');
  await assert.rejects(register(parseRegisterRequest(rotationOf(next, original.keyPair, randomBytes(32), now)), deps, now), refusedWith('ERR_KEY_ROTATION_REFUSED'), 'a nonce never offered');
  await assert.rejects(register(parseRegisterRequest(rotationOf(next, nacl.sign.keyPair(), nonce, now)), deps, now), refusedWith('ERR_KEY_ROTATION_REFUSED'), 'a proof by a key that is not the host\'s');
  await assert.rejects(register(parseRegisterRequest(rotationOf(next, original.keyPair, nonce, now, successorProofPayload(next.keyPair.publicKey))), deps, now), refusedWith('ERR_KEY_ROTATION_REFUSED'), 'a successor proof is no rotation proof');
  assert.deepEqual((await stores.hosts.get(hostId))!.publicKey, Buffer.from(original.keyPair.publicKey), 'refusals change nothing');

  const request = rotationOf(next, original.keyPair, nonce, now);
  const rotated = await register(parseRegisterRequest(request), deps, now);
  assert.equal(rotated.status, 'AGENT_STATUS_ACTIVE');
  assert.equal(rotated.agent_id, hostId, 'the same host record');
  const host = (await stores.hosts.get(hostId))!;
  assert.deepEqual(host.publicKey, Buffer.from(next.keyPair.publicKey));
  assert.equal(host.approval, 'active');
  assert.deepEqual(host.tags, { site: 'a' });
  assert.equal(host.identityState, null, 'the resolution ends: no instance pin left');
  assert.equal(host.identityRotationNonceSha256, null);
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-key-rotated', 5)).length, 1);

  await assert.rejects(register(parseRegisterRequest(request), deps, now + 1), refusedWith('ERR_REGISTER_REPLAYED'), 'the same request again');
  const again = await register(parseRegisterRequest(rotationOf(next, original.keyPair, nonce, now + 2)), deps, now + 2);
  assert.equal(again.agent_id, hostId, 'the same rotation repeated is answered by the new key');
  assert.deepEqual((await stores.hosts.get(hostId))!.previousPublicKey, Buffer.from(original.keyPair.publicKey));
  assert.equal((await stores.hosts.get(hostId))!.keyRotatedAt, now, 'and changes nothing');
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-key-rotated', 5)).length, 1);

  await assert.rejects(register(parseRegisterRequest(decodedRegister(signedRegister(original, '', {}, now + 3))), deps, now + 3), refusedWith('ERR_IDENTITY_RETIRED'), 'a Register by the old key');
  assert.equal(credentialRefusal(host, Math.floor(now / 1000) - 1)?.code, 'ERR_IDENTITY_RETIRED', 'a JWT issued before the rotation');
  assert.equal(credentialRefusal(host, Math.floor(now / 1000)), undefined, 'the one the rotation issued');
  // The clone, holding the old key, re-enrols once by its proof, as a new pending host.
  const clone = newIdentity('web-1');
  const successor = await register(parseRegisterRequest(decodedRegister({
    ...signedRegister(clone, '', {}, now + 4),
    predecessor_public_key: Buffer.from(original.keyPair.publicKey),
    predecessor_signature: Buffer.from(nacl.sign.detached(successorProofPayload(clone.keyPair.publicKey), original.keyPair.secretKey)),
  })), deps, now + 4);
  assert.equal(successor.status, 'AGENT_STATUS_PENDING');
  assert.notEqual(successor.agent_id, hostId);
  close();
});

test('resolving counts machines, not processes: 22 restarts of the kept machine and one clone sharing its fingerprint allow one re-enrolment; the current process stays selectable beyond the claimant cap', async () => {
  const { stores, deps, hostDeps, presence, hostId, now, close } = await world('allowance');
  const shared = '1'.repeat(64);
  const instance = (index: number) => index.toString(16).padStart(16, '0');
  const host = (await stores.hosts.get(hostId))!;
  assert.equal(await claimIdentity(deps, host, claimant(instance(100), shared), now), undefined);
  presence.attach(streamOf(hostId, claimant(instance(100), shared)), 30);
  // A cloned VM (same fingerprint) alternating with the original: A → B → A.
  assert.equal(await claimIdentity(deps, host, claimant(instance(200), shared), now + 1), undefined);
  await claimIdentity(deps, host, claimant(instance(100), shared), now + 2);
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant(instance(200), shared), now + 3))?.code, 'ERR_HOST_IDENTITY_CONFLICT');
  // The kept machine restarts 22 times while flagged (each a new process instance).
  for (let index = 0; index < 22; index += 1) await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant(instance(index), shared), now + 10 + index);
  const current = instance(21);
  assert.ok((await stores.hostClaimants.list(hostId)).some((each) => each.instanceId === current), 'the newest process is listed though more than 16 claimed');
  const resolved = await resolveIdentity(hostDeps, host.orgId, hostId, current, 'admin', now + 100);
  assert.equal(resolved.identitySuccessorsAllowed, 1, 'one other machine: its processes are not machines');
  close();
});

test('a resolution keeps detecting: a third machine beside the kept one is flagged again; an old resolution expires; --dismiss ends a false alarm', async () => {
  const { stores, deps, hostDeps, presence, hostId, now, close } = await world('after-resolve');
  const kept = claimant('aaaaaaaaaaaaaaaa', '1'.repeat(64));
  presence.attach(streamOf(hostId, kept), 30);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant('bbbbbbbbbbbbbbbb', '2'.repeat(64)), now);
  const orgId = (await stores.hosts.get(hostId))!.orgId;
  await resolveIdentity(hostDeps, orgId, hostId, kept.machineFingerprint, 'admin', now);
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, claimant('bbbbbbbbbbbbbbbb', '2'.repeat(64)), now + 1))?.code, 'ERR_IDENTITY_RETIRED');
  const third = claimant('cccccccccccccccc', '3'.repeat(64));
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, third, now + 2))?.code, 'ERR_IDENTITY_RETIRED', 'any machine but the kept one is retired meanwhile');
  // The kept key copied once more onto a machine with the kept fingerprint: alternation is still seen.
  const copy = claimant('dddddddddddddddd', '1'.repeat(64));
  assert.equal(await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now + 3), undefined);
  presence.attach(streamOf(hostId, copy), 30);
  assert.equal(await claimIdentity(deps, (await stores.hosts.get(hostId))!, copy, now + 3), undefined);
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, kept, now + 4))?.code, 'ERR_HOST_IDENTITY_CONFLICT', 'detection runs while resolved');
  assert.equal((await stores.hosts.get(hostId))!.identityState, 'conflict');

  await deps.services.tasks.create(orgId, { type: 'config_reload', hostId, by: 'test' }, now);
  const dismissed = await dismissIdentityConflict(hostDeps, orgId, hostId, 'admin', now + 5);
  assert.equal(dismissed.identityState, null);
  assert.equal((await stores.hostClaimants.list(hostId)).length, 0);
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-dismissed', 5)).length, 1);
  await assert.rejects(dismissIdentityConflict(hostDeps, orgId, hostId, 'admin', now + 6), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_STATE_CONFLICT');

  // Flagged and resolved again; a week later the machine never re-enrolled is judged afresh.
  const keptStream = streamOf(hostId, kept);
  presence.attach(keptStream, 30);
  await claimIdentity(deps, (await stores.hosts.get(hostId))!, third, now + 10);
  await resolveIdentity(hostDeps, orgId, hostId, kept.machineFingerprint, 'admin', now + 11);
  presence.detach(keptStream, 'stream-closed');
  assert.equal((await claimIdentity(deps, (await stores.hosts.get(hostId))!, third, now + 12))?.code, 'ERR_IDENTITY_RETIRED');
  assert.equal(await claimIdentity(deps, (await stores.hosts.get(hostId))!, third, now + 11 + IDENTITY_RESOLUTION_MAX_MS), undefined, 'no longer retired by a stale pin');
  assert.equal((await stores.hosts.get(hostId))!.identityState, null);
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-resolution-expired', 5)).length, 1);
  close();
});

test('host events: a host renamed in a loop cannot erase the audit of identity decisions', async () => {
  const { stores, hostId, now, close } = await world('events');
  await stores.hostEvents.record(hostId, now, 'identity-conflict', { reason: 'alternating' });
  await stores.hostEvents.record(hostId, now, 'identity-resolved', { by: 'admin' });
  for (let index = 0; index < HOST_EVENTS_KEPT + 50; index += 1) await stores.hostEvents.record(hostId, now + index, 'renamed', { from: `n${index}`, to: `n${index + 1}` });
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-conflict', 5)).length, 1);
  assert.equal((await stores.hostEvents.ofKind(hostId, 'identity-resolved', 5)).length, 1);
  assert.equal((await stores.hostEvents.ofKind(hostId, 'renamed', 1_000)).length, HOST_EVENTS_KEPT, 'renames stay bounded');
  close();
});

test('approving a host as the replacement of one that is still online is refused unless forced: a working agent is not retired by a mistyped id', async () => {
  const { stores, deps, hostDeps, presence, hostId, now, close } = await world('replace-online');
  const orgId = (await stores.hosts.get(hostId))!.orgId;
  const token = await createEnrolmentToken(stores, orgId, { label: 'p', expiresInMs: 60_000, maxUses: 1, autoApprove: false, tags: {}, createdBy: 'test', source: 'admin', metadata: {} }, now);
  const incoming = await register(parseRegisterRequest(decodedRegister(signedRegister(newIdentity('web-1'), token.secret, {}, now))), deps, now);
  const newId = incoming.agent_id as string;
  const oldStream = streamOf(hostId, claimant('aaaaaaaaaaaaaaaa', '1'.repeat(64)));
  presence.attach(oldStream, 30);
  await hostDeps.presence.claimed(oldStream);
  await assert.rejects(approveAsReplacement(hostDeps, orgId, newId, hostId, 'admin', now), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_STATE_CONFLICT' && error.details.online === true);
  assert.equal((await stores.hosts.get(hostId))!.deletedAt, null, 'nothing changed');
  assert.equal((await stores.hosts.get(newId))!.approval, 'pending');
  const replaced = await approveAsReplacement(hostDeps, orgId, newId, hostId, 'admin', now, true);
  assert.equal(replaced.replaces, hostId);
  assert.equal(presence.isStreaming(hostId), false, 'the old stream is closed');
  close();
});

test('an agent signature by a small-order key proves nothing: Register and the successor proof refuse it (an all-zero key and signature pass crypto.verify)', async () => {
  const zeroKey = Buffer.alloc(32);
  const zeroSignature = Buffer.alloc(64);
  const key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: zeroKey.toString('base64url') }, format: 'jwk' });
  assert.equal(verifyCrypto(null, Buffer.from('any message'), key, zeroSignature), true, 'the weakness the check covers');
  assert.equal(verifyAgentSignature(zeroKey, Buffer.from('any message'), zeroSignature), false);
  const signBitSet = Buffer.from('ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', 'hex');
  assert.equal(isSmallOrderKey(signBitSet), true, 'p − 1 with the sign bit set');
  assert.equal(isSmallOrderKey(Buffer.from(nacl.sign.keyPair().publicKey)), false);
  const { deps, now, close } = await world('small-order');
  const identity = newIdentity('zero');
  const request = decodedRegister({ ...signedRegister(identity, 'x', {}, now), public_key: zeroKey, signature: zeroSignature });
  await assert.rejects(register(parseRegisterRequest(request), deps, now), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_REGISTER_SIGNATURE_INVALID');
  close();
});
