import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { CtOpsError } from '../common/errors.ts';
import { idPattern } from '../common/ids.ts';
import { AgentJwtAuthority } from '../appliance/auth/agent-jwt.ts';
import { RegisterChallenges } from '../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest } from '../appliance/enrolment/register-input.ts';
import { EnrolmentService } from '../appliance/enrolment/service.ts';
import { retireHost } from '../appliance/hosts/delete.ts';
import { HostService } from '../appliance/hosts/service.ts';
import { ensureJwtSigningKey } from '../appliance/pki/jwt-signing-key.ts';
import type { LiveSession } from '../appliance/presence/registry.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { openStores } from '../appliance/store/index.ts';
import { TaskService } from '../appliance/tasks/service.ts';
import { decodedRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-host-service-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const log = pino({ level: 'silent' });

/** The services over a real SQLite file, wired as serve.ts wires them, with one enrolled active host. */
async function world(name: string) {
  const path = join(dir, `${name}.db`);
  const stores = openStores(path);
  const org = await stores.organisations.ensureDefault(Date.now());
  const jwtKey = await ensureJwtSigningKey(dir);
  const cluster = await singleInstance(stores, log);
  const presence: PresenceService = new PresenceService({ stores, log, cluster, requeueTasks: (hostId) => void tasks.disconnected(hostId) });
  const tasks: TaskService = new TaskService({ stores, presence: presence.registry, log, cluster, onFinished: (tx, task) => hosts.taskFinished(tx, task) });
  const hosts: HostService = new HostService({ stores, presence, tasks, log });
  const enrolment = new EnrolmentService({ stores, jwt: new AgentJwtAuthority(jwtKey, 3600), challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log });
  const now = Date.now();
  const token = await enrolment.issueToken(org.id, { label: 't', expiresInMs: 60_000, maxUses: 5, autoApprove: true, tags: {}, createdBy: 'test', source: 'admin', metadata: {} }, now);
  const registerOnce = (identity = newIdentity()) => enrolment.register(parseRegisterRequest(decodedRegister(signedRegister(identity, token.secret, {}, now))), now);
  const enrolled = await registerOnce();
  return { path, stores, orgId: org.id, presence, hosts, enrolment, token, registerOnce, hostId: enrolled.agent_id as string, now };
}

/**
 * A live stream of `hostId` that records, when it is closed, the host's deleted_at and approval as
 * another connection to the database file reads them: what was committed at that moment.
 */
function observedStream(path: string, hostId: string) {
  const seenAtClose: Array<{ deletedAt: number | null; approval: string; code: string | undefined }> = [];
  const session: LiveSession = {
    agentId: hostId,
    send: () => Promise.resolve(true),
    close: (error) => {
      const reader = new Database(path, { readonly: true });
      try {
        const row = reader.prepare('SELECT deleted_at, approval FROM hosts WHERE id = ?').get(hostId) as { deleted_at: number | null; approval: string };
        seenAtClose.push({ deletedAt: row.deleted_at, approval: row.approval, code: error?.code });
      } finally {
        reader.close();
      }
    },
  };
  return { session, seenAtClose };
}

test('two concurrent registrations of one new key enrol one host and both are answered with it; the token pays one use', async () => {
  const { stores, orgId, enrolment, token, registerOnce } = await world('register-race');
  const identity = newIdentity('racing');
  const answers = await Promise.all([registerOnce(identity), registerOnce(identity)]);
  assert.equal(answers[0].status, 'AGENT_STATUS_ACTIVE');
  assert.equal(answers[1].status, 'AGENT_STATUS_ACTIVE');
  assert.equal(answers[0].agent_id, answers[1].agent_id, 'one host for the key');
  const racing = (await stores.hosts.list(orgId)).filter((host) => host.hostname === 'racing');
  assert.equal(racing.length, 1);
  const tokens = await enrolment.listTokens(orgId);
  assert.equal(tokens.find((each) => each.id === token.token.id)?.uses, 2, 'the world host and the racing key: one use each');
  await stores.close();
});

test("a host enrolled later gets an id that sorts later, so its first scan's name-index entries append (decision 156)", async () => {
  const { stores, enrolment, token, hostId, now } = await world('time-ordered-ids');
  const later = await enrolment.register(parseRegisterRequest(decodedRegister(signedRegister(newIdentity(), token.secret, {}, now + 1000))), now + 1000);
  const laterId = later.agent_id as string;
  assert.match(laterId, idPattern('hst'));
  assert.equal(hostId.slice(4, 16), now.toString(16).padStart(12, '0'), 'the enrolment time leads the id');
  assert.ok(hostId < laterId, `${hostId} < ${laterId}`);
  await stores.close();
});

test('a host insert for a key already enrolled is an answer (false), not a constraint error, so a registration that lost the race can roll back and answer by key', async () => {
  const { stores, orgId, hostId } = await world('insert-conflict');
  const host = (await stores.hosts.get(hostId))!;
  const again = { ...host, id: 'hst_00000000000000000000', enrolledAt: host.enrolledAt + 1 };
  assert.equal(await stores.hosts.insert(again), undefined);
  assert.equal((await stores.hosts.list(orgId)).length, 1);
  await stores.close();
});

test('a deletion whose transaction fails leaves the stream open and the host online; a committed one closes the stream only after commit', async () => {
  const { path, stores, orgId, presence, hosts, hostId, now } = await world('deletion-effects');
  const stream = observedStream(path, hostId);
  presence.registry.attach(stream.session, 30);
  await presence.claimed(stream.session);

  // The deletion of an uninstall report runs inside the report's transaction; a later failure there rolls it all back.
  await assert.rejects(
    stores.transact(async (tx) => {
      await retireHost({ presence, log }, tx, hostId, now, 'admin', 'host deleted');
      throw new Error('a later step of the same transaction failed');
    }),
    /a later step/,
  );
  assert.equal(presence.isStreaming(hostId), true, 'the stream of a host whose deletion rolled back stays open');
  assert.deepEqual(stream.seenAtClose, [], 'nothing closed it');
  assert.equal((await stores.hosts.get(hostId))!.deletedAt, null);

  const outcome = await hosts.delete(orgId, hostId, { uninstall: false }, 'admin', now + 1);
  assert.equal(outcome.host.deletedAt, now + 1);
  assert.equal(presence.isStreaming(hostId), false);
  assert.deepEqual(stream.seenAtClose, [{ deletedAt: now + 1, approval: 'active', code: 'ERR_AGENT_NOT_ACTIVE' }], 'closed once, when the deletion was already committed');
  // The offline bookkeeping ran too: last_disconnected_at recorded after the close.
  await waitFor('last_disconnected_at recorded', async () => (await stores.hosts.get(hostId))!.lastDisconnectedAt !== null, 2_000, 10);
  await stores.close();
});

test('a refused decision closes nothing; a revocation closes the stream after its commit', async () => {
  const { path, stores, orgId, presence, hosts, hostId, now } = await world('revoke-effects');
  const stream = observedStream(path, hostId);
  presence.registry.attach(stream.session, 30);
  await presence.claimed(stream.session);
  await assert.rejects(hosts.decide(orgId, hostId, 'reject', 'admin', now), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_STATE_CONFLICT');
  await assert.rejects(hosts.decide('org_other', hostId, 'revoke', 'admin', now), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_NOT_FOUND');
  assert.equal(presence.isStreaming(hostId), true);
  const revoked = await hosts.decide(orgId, hostId, 'revoke', 'admin', now + 1);
  assert.equal(revoked.approval, 'revoked');
  assert.deepEqual(stream.seenAtClose, [{ deletedAt: null, approval: 'revoked', code: 'ERR_AGENT_NOT_ACTIVE' }]);
  await stores.close();
});

test('hostOfOrg answers ERR_HOST_NOT_FOUND alike for an unknown id, another organisation\'s host and a deleted one (unless asked to include it)', async () => {
  const { stores, orgId, hosts, hostId, now } = await world('host-of-org');
  assert.equal((await hosts.hostOfOrg(orgId, hostId)).id, hostId);
  const notFound = (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_HOST_NOT_FOUND';
  await assert.rejects(hosts.hostOfOrg(orgId, 'hst_00000000000000000000'), notFound);
  await assert.rejects(hosts.hostOfOrg('org_other', hostId), notFound);
  await hosts.delete(orgId, hostId, { uninstall: false }, 'admin', now);
  await assert.rejects(hosts.hostOfOrg(orgId, hostId), notFound);
  assert.equal((await hosts.hostOfOrg(orgId, hostId, { includeDeleted: true })).deletedAt, now);
  await stores.close();
});
