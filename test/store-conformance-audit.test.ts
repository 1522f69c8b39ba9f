/**
 * The audit log's store and service on both backends: filters, the keyset cursor (every event once,
 * newest first, events recorded meanwhile never on a later page), the export over many pages, and
 * the retention prune.
 */
import assert from 'node:assert/strict';
import { after } from 'node:test';
import pino from 'pino';
import { AuditService } from '../appliance/audit/service.ts';
import type { ClusterService } from '../appliance/cluster/service.ts';
import type { AuditEventInput } from '../appliance/model/audit.ts';
import { AuditEventStore } from '../appliance/store/audit-events.ts';
import type { Stores } from '../appliance/store/index.ts';
import { OrganisationStore } from '../appliance/store/organisations.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance, type OpenBackend } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

/** A time in ms past 2^32, which BIGINT must carry unchanged. */
const AT = 1_764_000_000_123;
const DAY = 86_400_000;

/** An event of `orgId` with every field filled. */
function event(orgId: string, overrides: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    orgId,
    at: AT,
    actor: 'admin',
    actorKind: 'cli',
    source: '127.0.0.1',
    action: 'hosts.approve',
    target: { id: 'hst_0123456789abcdef0123' },
    outcome: 'ok',
    errorCode: null,
    status: 200,
    ...overrides,
  };
}

async function openAudit(backend: OpenBackend, retentionDays = 365): Promise<{ store: AuditEventStore; service: AuditService; orgId: string }> {
  const org = await new OrganisationStore(backend.kysely).ensureDefault(AT);
  const store = new AuditEventStore(backend.kysely);
  // One instance: the pass runs at once, as ApplianceInstanceStore.exclusively does on SQLite.
  const cluster = { exclusively: async (_key: bigint, work: () => Promise<void>) => (await work(), true) } as unknown as ClusterService;
  const service = new AuditService({ stores: { auditEvents: store } as unknown as Stores, cluster, log: pino({ level: 'silent' }), retentionDays });
  return { store, service, orgId: org.id };
}

conformance('audit store: an event reads back with every field, ids grow, and each filter narrows the page', async (backend) => {
  const { store, service, orgId } = await openAudit(backend);
  const refused = event(orgId, { at: AT + 2, actor: 'viewer', actorKind: 'api-session', action: 'hosts.approve', outcome: 'refused', errorCode: 'ERR_ADMIN_FORBIDDEN', status: 403, source: 'fd00:1::/64' });
  await store.insert(event(orgId));
  await store.insert(event(orgId, { at: AT + 1, action: 'tokens.create', target: {} }));
  await store.insert(refused);
  await store.insert(event(orgId, { at: AT + 3, actor: '', actorKind: 'anonymous', action: 'hosts.read', outcome: 'refused', errorCode: 'ERR_ADMIN_UNAUTHENTICATED', status: 401, target: {} }));

  const all = await store.page(orgId, {}, 10);
  assert.equal(all.length, 4);
  assert.ok(all.every((row, index) => index === 0 || row.id < all[index - 1]!.id), 'newest (highest id) first');
  assert.deepEqual(all[1], { id: all[1]!.id, ...refused });
  assert.equal(typeof all[1]!.id, 'number');

  const actions = async (filter: Parameters<AuditEventStore['page']>[1]) => (await store.page(orgId, filter, 10)).map((row) => row.action);
  assert.deepEqual(await actions({ actor: 'viewer' }), ['hosts.approve']);
  assert.deepEqual(await actions({ actor: '' }), ['hosts.read'], "'' finds the unknown actor");
  assert.deepEqual(await actions({ action: 'hosts.approve' }), ['hosts.approve', 'hosts.approve']);
  assert.deepEqual(await actions({ outcome: 'refused' }), ['hosts.read', 'hosts.approve']);
  assert.deepEqual(await actions({ since: AT + 1, until: AT + 3 }), ['hosts.approve', 'tokens.create'], 'since inclusive, until exclusive');
  assert.deepEqual(await actions({ beforeId: all[1]!.id }), ['tokens.create', 'hosts.approve']);
  assert.deepEqual(await actions({ outcome: 'refused', actor: 'viewer', since: AT + 2 }), ['hosts.approve'], 'filters combine');
  assert.deepEqual(await store.page('org_other', {}, 10), [], 'another organisation sees none');

  const page = await service.list(orgId, {}, 3);
  assert.equal(page.events.length, 3);
  assert.equal(page.nextBeforeId, page.events[2]!.id, 'the cursor of the next page is the last event of this one');
  const last = await service.list(orgId, { beforeId: page.nextBeforeId! }, 3);
  assert.equal(last.events.length, 1);
  assert.equal(last.nextBeforeId, undefined, 'no cursor after the last event');
});

conformance('audit service: paging by cursor and the export return every event once, newest first, while new events are recorded', async (backend) => {
  const { store, service, orgId } = await openAudit(backend);
  const total = 1_234;
  for (let start = 0; start < total; start += 200) {
    await Promise.all(Array.from({ length: Math.min(200, total - start) }, (_, index) => store.insert(event(orgId, { at: AT + start + index, target: { id: String(start + index) } }))));
  }
  const seen: number[] = [];
  let beforeId: number | undefined;
  for (;;) {
    const page = await service.list(orgId, { ...(beforeId !== undefined && { beforeId }) }, 100);
    seen.push(...page.events.map((row) => row.id));
    // Recorded while paging: newer than the first page, so never on a later one.
    await service.record(event(orgId, { action: 'audit.read', at: AT + total }));
    if (page.nextBeforeId === undefined) break;
    beforeId = page.nextBeforeId;
  }
  assert.equal(seen.length, total);
  assert.equal(new Set(seen).size, total, 'each event once');
  assert.deepEqual(seen, [...seen].sort((a, b) => b - a), 'newest first');

  const exported: number[] = [];
  for await (const row of service.export(orgId, { action: 'hosts.approve' })) exported.push(row.id);
  assert.deepEqual(exported, seen, 'the export, over three pages of 500, is the same sequence');
  let reads = 0;
  for await (const row of service.export(orgId, { action: 'audit.read' })) reads += row.action === 'audit.read' ? 1 : 0;
  assert.equal(reads, 13, 'one event recorded per page read');
});

conformance('audit service: the prune deletes the events older than the retention, of every organisation, and keeps the rest', async (backend) => {
  const { store, service, orgId } = await openAudit(backend, 30);
  const now = AT + 400 * DAY;
  const ages = [400, 31, 30.5, 29, 0];
  for (const age of ages) await store.insert(event(orgId, { at: now - age * DAY, target: { age: String(age) } }));
  await backend.kysely.insertInto('organisations').values({ id: 'org_other', name: 'other', created_at: AT }).execute();
  await store.insert(event('org_other', { at: now - 31 * DAY }));
  assert.equal(await service.prune(now), 4);
  assert.deepEqual((await store.page(orgId, {}, 10)).map((row) => row.target.age), ['0', '29']);
  assert.deepEqual(await store.page('org_other', {}, 10), []);
  assert.equal(await service.prune(now), 0, 'a second pass finds nothing');
  assert.equal(await store.pruneBefore(now + DAY), 2);
});

conformance('audit store: a prune larger than one batch (2,000) deletes it all', async (backend) => {
  const { store, orgId } = await openAudit(backend);
  const rows = 12_345;
  const row = (index: number) => ({ org_id: orgId, at: AT + index, actor: 'admin', actor_kind: 'cli' as const, source: '127.0.0.1', action: 'hosts.approve', target: '{}', outcome: 'ok' as const, error_code: null, status: 200 });
  // 2,000 rows a statement: 20,000 values, within both backends' limit on bound parameters.
  for (let start = 0; start < rows; start += 2_000) {
    await backend.kysely.insertInto('audit_events').values(Array.from({ length: Math.min(2_000, rows - start) }, (_, index) => row(start + index))).execute();
  }
  assert.equal(await store.pruneBefore(AT + rows - 1), rows - 1);
  assert.equal((await store.page(orgId, {}, 10)).length, 1);
});
