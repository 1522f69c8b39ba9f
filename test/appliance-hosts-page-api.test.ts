import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { request } from 'node:https';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, newIdentity, signedRegister } from './helpers/ingest-client.ts';
import { waitFor } from './helpers/wait.ts';

type HostJson = { id: string; hostname: string; status: string; tags: Record<string, string> };

describe('GET /api/v1/hosts pages, filters, searches and sorts when asked, and lists every host when not', () => {
  const ingest = useIngestFixture();
  const ids: Record<string, string> = {};

  /** The listing at `query` (already URL-encoded), with its status, x-total-count header and parsed body. */
  const list = async (query: string): Promise<{ status: number; total: string | undefined; body: any }> => {
    const { appliance } = ingest;
    const credential = readFileSync(join(appliance.dataDir, 'admin-cli.token'), 'utf8').trim();
    const sent = request({ host: 'localhost', port: appliance.httpPort, path: `/api/v1/hosts${query}`, ca: appliance.caCert, headers: { authorization: `Bearer ${credential}` } });
    sent.end();
    const [answer] = (await once(sent, 'response')) as [IncomingMessage];
    let text = '';
    for await (const chunk of answer.setEncoding('utf8')) text += chunk;
    const total = answer.headers['x-total-count'];
    return { status: answer.statusCode ?? 0, total: Array.isArray(total) ? total.join() : total, body: JSON.parse(text) };
  };
  const hostnames = (body: HostJson[]) => body.map((host) => host.hostname);

  before(async () => {
    const { appliance, client } = ingest;
    const tagged = await appliance.createToken('--auto-approve', '--max-uses', '3', '--tag', 'role:web');
    const plain = await appliance.createToken('--max-uses', '3');
    for (const [hostname, token] of [['Web-b_1', tagged.token], ['web-a%2', tagged.token], ['db-c3', tagged.token], ['pending-d4', plain.token]] as const) {
      const registered = await callRegister(client, signedRegister(newIdentity(hostname), token));
      assert.ok(registered.ok, JSON.stringify(registered));
      ids[hostname] = registered.value.agent_id;
      if (registered.value.jwt) ids[`${hostname}/jwt`] = registered.value.jwt;
    }
    await ingest.openStream(ids['db-c3']!, ids['db-c3/jwt']!);
    // Heartbeats are written about once a second (heartbeat/vitals-writer.ts).
    await waitFor('the heartbeat recorded', async () => (await list('')).body.some((host: HostJson & { last_heartbeat_at: string | null }) => host.last_heartbeat_at !== null));
  });

  test('without a query every host comes back as before, with no total header', async () => {
    const all = await list('');
    assert.equal(all.status, 200);
    assert.equal(all.total, undefined);
    assert.deepEqual(new Set(hostnames(all.body)), new Set(['Web-b_1', 'web-a%2', 'db-c3', 'pending-d4']));
  });

  test('limit, offset and sort page through the hosts in order, each page with the total', async () => {
    const first = await list('?limit=3&sort=hostname');
    const second = await list('?limit=3&offset=3&sort=hostname');
    assert.deepEqual([first.status, first.total, second.total], [200, '4', '4']);
    assert.deepEqual([...hostnames(first.body), ...hostnames(second.body)], ['db-c3', 'pending-d4', 'web-a%2', 'Web-b_1']);
    assert.deepEqual(hostnames((await list('?sort=-hostname&limit=2')).body), ['Web-b_1', 'web-a%2']);
    assert.deepEqual(hostnames((await list('?sort=-last_seen&limit=1')).body), ['db-c3'], 'the one host that sent a heartbeat is the most recently seen');
    const byStatus = await list('?sort=status');
    assert.deepEqual(byStatus.body.map((host: HostJson) => host.status), ['never-connected', 'never-connected', 'online', 'pending']);
  });

  test('status, tag, OS, agent version and a literal hostname search filter the page', async () => {
    const online = await list('?status=online');
    assert.deepEqual([hostnames(online.body), online.total, online.body[0].status], [['db-c3'], '1', 'online']);
    assert.deepEqual(hostnames((await list('?status=pending')).body), ['pending-d4']);
    assert.deepEqual(new Set(hostnames((await list('?tag=role%3Dweb')).body)), new Set(['Web-b_1', 'web-a%2', 'db-c3']));
    assert.deepEqual((await list('?tag=role')).total, '3');
    assert.deepEqual((await list('?tag=role%3Ddb')).total, '0');
    assert.deepEqual([(await list('?os=linux')).total, (await list('?os=windows')).total], ['4', '0']);
    assert.deepEqual([(await list('?version=0.1.0-test')).total, (await list('?version=9')).total], ['4', '0']);
    assert.deepEqual(hostnames((await list('?q=WEB')).body).sort(), ['Web-b_1', 'web-a%2']);
    assert.deepEqual(hostnames((await list('?q=%25')).body), ['web-a%2'], '% is itself');
    assert.deepEqual(hostnames((await list('?q=b_')).body), ['Web-b_1'], '_ is itself');
    assert.deepEqual(hostnames((await list('?q=web&status=pending')).body), []);
  });

  test('a bad page, filter or sort is refused with ERR_INVALID_ARGUMENT naming the parameter', async () => {
    for (const [query, field] of [
      ['?limit=0', 'limit'], ['?limit=501', 'limit'], ['?limit=ten', 'limit'], ['?offset=-1', 'offset'],
      ['?sort=bogus', 'sort'], ['?sort=-', 'sort'], ['?status=deleted', 'status'], ['?q=', 'q'], ['?surprise=1', ''],
    ] as const) {
      const refused = await list(query);
      assert.equal(refused.status, 400, query);
      assert.equal(refused.body.error.code, 'ERR_INVALID_ARGUMENT', query);
      assert.match(refused.body.error.details.field, new RegExp(`^querystring${field && `\\.${field}$`}`), query);
    }
  });
});
