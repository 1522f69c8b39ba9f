import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { useIngestFixture } from './helpers/ingest-fixture.ts';

type TaskJson = Record<string, unknown> & { id: string; host_id: string; type: string; state: string };

describe('tasks through the admin API and CLI of a real appliance', () => {
  const ingest = useIngestFixture();
  const enrol = async (hostname: string, autoApprove: boolean): Promise<string> => (await ingest.enrol({ hostname, autoApprove })).hostId;
  const failure = async (...args: string[]): Promise<{ code: number | null; stderr: string }> => {
    const result = await ingest.appliance.cli(...args);
    return { code: result.code, stderr: result.stderr };
  };

  test('a rescan queues one software_inventory task that tasks list shows, and rescanning again returns the same task', async () => {
    const hostId = await enrol('rescan-me', true);
    const before = Date.now();
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    assert.match(queued.id, /^tsk_[0-9a-f]{20}$/);
    assert.deepEqual([queued.host_id, queued.type, queued.state, queued.attempts, queued.created_by], [hostId, 'software_inventory', 'queued', 0, 'admin']);
    const expiresAt = Date.parse(queued.expires_at as string);
    assert.ok(expiresAt >= before + 24 * 3600_000 && expiresAt <= Date.now() + 24 * 3600_000, 'the admin sees when a queued scan gives up');

    const listed = await ingest.appliance.cliJson<TaskJson[]>('tasks', 'list', '--host', hostId, '--state', 'queued');
    assert.deepEqual(listed.map((task) => task.id), [queued.id]);
    assert.ok((await ingest.appliance.cliJson<TaskJson[]>('tasks', 'list')).some((task) => task.id === queued.id));
    assert.deepEqual(await ingest.appliance.cliJson<TaskJson[]>('tasks', 'list', '--host', hostId, '--state', 'cancelled'), []);

    const again = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    assert.equal(again.id, queued.id);
    assert.deepEqual(await ingest.appliance.cliJson<TaskJson>('tasks', 'show', queued.id), queued);
    const table = await ingest.appliance.cli('tasks', 'list', '--host', hostId);
    assert.match(table.stdout, /^ID\s+HOST_ID\s+TYPE\s+STATE/m);
    assert.match(table.stdout, new RegExp(`${queued.id}\\s+${hostId}\\s+software_inventory\\s+queued`));
  });

  test('cancel moves a queued task to cancelled; cancelling it again is a conflict, and unknown ids are not found', async () => {
    const hostId = await enrol('cancel-me', true);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    const cancelled = await ingest.appliance.cliJson<TaskJson>('tasks', 'cancel', queued.id);
    assert.equal(cancelled.state, 'cancelled');
    assert.equal(typeof cancelled.finished_at, 'string');

    const again = await failure('tasks', 'cancel', queued.id);
    assert.equal(again.code, 65);
    assert.match(again.stderr, /ERR_TASK_STATE_CONFLICT: cannot cancel a task that is cancelled/);

    const unknown = 'tsk_00000000000000000000';
    for (const args of [['tasks', 'show', unknown], ['tasks', 'cancel', unknown]]) {
      const result = await failure(...args);
      assert.equal(result.code, 66, args.join(' '));
      assert.match(result.stderr, /ERR_TASK_NOT_FOUND/);
    }
    const malformed = await failure('tasks', 'show', 'not-a-task');
    assert.match(malformed.stderr, /ERR_INVALID_ARGUMENT/);

    const fresh = await ingest.appliance.cliJson<TaskJson>('hosts', 'rescan', hostId);
    assert.notEqual(fresh.id, queued.id, 'a cancelled scan does not block a new one');
    assert.equal(fresh.state, 'queued');
  });

  test('a rescan is refused for a pending host and for an unknown one, each with its code', async () => {
    const pending = await failure('hosts', 'rescan', await enrol('not-yet-approved', false));
    assert.equal(pending.code, 65);
    assert.match(pending.stderr, /ERR_HOST_STATE_CONFLICT/);
    const unknown = await failure('hosts', 'rescan', 'hst_00000000000000000000');
    assert.equal(unknown.code, 66);
    assert.match(unknown.stderr, /ERR_HOST_NOT_FOUND/);
    const badState = await failure('tasks', 'list', '--state', 'bogus');
    assert.equal(badState.code, 64);
  });
});
