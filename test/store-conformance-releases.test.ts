import assert from 'node:assert/strict';
import { after } from 'node:test';
import { CtOpsError } from '../common/errors.ts';
import { constraintViolation } from '../appliance/store/constraint-violation.ts';
import type { AgentRelease } from '../appliance/model/release.ts';
import { AgentReleaseStore } from '../appliance/store/agent-releases.ts';
import { OrganisationStore } from '../appliance/store/organisations.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { conformance } from './helpers/store-backends.ts';

after(async () => (await sharedPostgres()).stop());

/** A time in ms past 2^32, which BIGINT must carry unchanged. */
const AT = 1_764_000_000_123;

/** A release of `version` with every field filled; its size past 2^32 too. */
function release(version: string, overrides: Partial<AgentRelease> = {}): AgentRelease {
  return {
    version,
    keyId: '0123456789ABCDEF',
    trustedComment: `ct-ops-agent ${version} signed 2025-11-24T12:00:00Z by release key 0123456789ABCDEF`,
    files: [
      { name: 'SHA256SUMS.minisig', sha256: 'a'.repeat(64), size: 312 },
      { name: `ct-ops-agent-${version}-linux-x64`, sha256: 'b'.repeat(64), size: 5_000_000_000 },
    ],
    importedAt: AT,
    importedBy: 'admin',
    retiredAt: null,
    ...overrides,
  };
}

conformance('release store: an inserted release reads back with every field, and a second insert of its version is refused without changing it', async ({ kysely }) => {
  const releases = new AgentReleaseStore(kysely);
  const first = release('1.2.3');
  assert.equal(await releases.insert(first), true);
  assert.deepEqual(await releases.get('1.2.3'), first);
  assert.equal(await releases.get('1.2.4'), undefined);

  const retiredOnImport = release('1.2.4', { retiredAt: AT + 1 });
  assert.equal(await releases.insert(retiredOnImport), true);
  assert.deepEqual(await releases.get('1.2.4'), retiredOnImport, 'a retired time is stored as given');

  const other = release('1.2.3', { keyId: 'FEDCBA9876543210', trustedComment: 'another', files: [], importedAt: AT + 5, importedBy: 'someone', retiredAt: AT + 6 });
  assert.equal(await releases.insert(other), false);
  assert.deepEqual(await releases.get('1.2.3'), first, 'the stored release is unchanged');
});

conformance('release store: versions are ordered by their numbers, not as text (1.10.0 > 1.9.0 > 1.2.3), and newest skips retired ones unless asked', async ({ kysely }) => {
  const releases = new AgentReleaseStore(kysely);
  assert.equal(await releases.newest({ includeRetired: true }), undefined, 'none stored');
  for (const version of ['1.9.0', '1.2.3', '1.10.0']) assert.equal(await releases.insert(release(version)), true);
  assert.deepEqual((await releases.list()).map((stored) => stored.version), ['1.10.0', '1.9.0', '1.2.3']);
  assert.equal((await releases.newest({ includeRetired: false }))?.version, '1.10.0');

  assert.equal(await releases.retire('1.10.0', AT + 10), true);
  assert.equal((await releases.newest({ includeRetired: true }))?.version, '1.10.0');
  assert.equal((await releases.newest({ includeRetired: false }))?.version, '1.9.0');
  assert.deepEqual((await releases.list()).map((stored) => [stored.version, stored.retiredAt]), [['1.10.0', AT + 10], ['1.9.0', null], ['1.2.3', null]], 'list keeps retired releases');

  for (const version of ['1.9.0', '1.2.3']) await releases.retire(version, AT + 11);
  assert.equal(await releases.newest({ includeRetired: false }), undefined, 'every release retired');
});

conformance('release store: a release is retired once; retiring it again, or an unknown version, changes nothing', async ({ kysely }) => {
  const releases = new AgentReleaseStore(kysely);
  await releases.insert(release('2.0.0'));
  assert.equal(await releases.retire('2.0.0', AT + 1), true);
  assert.equal(await releases.retire('2.0.0', AT + 2), false);
  assert.equal((await releases.get('2.0.0'))?.retiredAt, AT + 1, 'the first retirement time is kept');
  assert.equal(await releases.retire('9.9.9', AT + 3), false);
});

conformance('release store: a version that is not MAJOR.MINOR.PATCH is refused before SQL, a row whose numbers are not its version\'s by the table, and stored files that are not a file list fail the read with ERR_DATABASE', async ({ kysely }) => {
  const releases = new AgentReleaseStore(kysely);
  for (const version of ['1.2', '1.2.3-rc.1', '01.2.3', 'v1.2.3', '1.2.99999999999999999']) {
    await assert.rejects(releases.insert(release(version)), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_INTERNAL', version);
  }
  assert.deepEqual(await releases.list(), []);
  const misnumbered = kysely.insertInto('agent_releases').values({
    version: '1.10.0', version_major: 1, version_minor: 1, version_patch: 0, key_id: 'k', trusted_comment: 'c', files: '[]', imported_at: AT, imported_by: 'admin', retired_at: null,
  });
  await assert.rejects(misnumbered.execute(), (error: unknown) => constraintViolation(error) === 'check');

  await releases.insert(release('3.0.0'));
  for (const files of ['not json', '{}', '[{"name":"a","sha256":"b"}]', '[{"name":"a","sha256":"b","size":-1}]']) {
    await kysely.updateTable('agent_releases').set({ files }).where('version', '=', '3.0.0').execute();
    await assert.rejects(releases.get('3.0.0'), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_DATABASE', files);
  }
});

conformance('release store: an organisation\'s minimum version is set, replaced and cleared, and must be an imported release', async ({ kysely }) => {
  const releases = new AgentReleaseStore(kysely);
  const org = await new OrganisationStore(kysely).ensureDefault(AT);
  assert.equal(await releases.minimum(org.id), undefined, 'none set');
  await releases.insert(release('1.2.3'));
  await releases.insert(release('1.3.0'));
  await releases.setMinimum(org.id, { version: '1.2.3', setAt: AT, setBy: 'admin' });
  assert.deepEqual(await releases.minimum(org.id), { version: '1.2.3', setAt: AT, setBy: 'admin' });
  await releases.setMinimum(org.id, { version: '1.3.0', setAt: AT + 1, setBy: 'other' });
  assert.deepEqual(await releases.minimum(org.id), { version: '1.3.0', setAt: AT + 1, setBy: 'other' }, 'replaced');
  const refused = await releases.setMinimum(org.id, { version: '9.9.9', setAt: AT + 2, setBy: 'admin' }).then(() => assert.fail('accepted'), (error: unknown) => error);
  assert.equal(constraintViolation(refused), 'foreign-key', 'a version not imported');
  assert.equal((await releases.minimum(org.id))?.version, '1.3.0', 'unchanged by the refusal');
  await releases.setMinimum(org.id, undefined);
  assert.equal(await releases.minimum(org.id), undefined, 'cleared');
});
