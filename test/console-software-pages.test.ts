import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SOFTWARE_PAGE_ROWS } from '../appliance/console/pages/software.tsx';
import { openStores } from '../appliance/store/index.ts';
import { firstAdminClient } from './bench/lib/console-client.ts';
import { benchInventoryService, insertBenchHosts, scanHost } from './bench/lib/inventory-scan.ts';
import { TestAppliance } from './helpers/appliance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-console-software-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The table rows of a software page's hosts. */
const hostRows = (html: string): number => html.match(/<a href="\/console\/hosts\/hst_/g)?.length ?? 0;

test('a package on more hosts than a page holds is shown a page of hosts at a time, and its CSV still lists every host', async () => {
  const hosts = SOFTWARE_PAGE_ROWS + 1;
  const stores = openStores(join(dir, 'appliance.db'));
  try {
    const inventory = benchInventoryService(stores);
    const package_ = { name: 'openssl', version: '3.0.13-1', source: 'dpkg', architecture: 'amd64', publisher: 'Debian', installDate: 1_700_000_000 };
    for (const hostId of await insertBenchHosts(stores, hosts)) await scanHost(inventory, hostId, `scn-${hostId}`, [package_]);
  } finally {
    await stores.close();
  }
  const appliance = await TestAppliance.start({ dataDir: dir, sans: ['127.0.0.1'] });
  const client = await firstAdminClient(appliance, 'console software pages passphrase');
  try {
    const first = await client.call('GET', '/console/software?name=openssl');
    assert.equal(first.status, 200);
    assert.match(first.text, new RegExp(`${hosts} host\\(s\\) have openssl\\.`));
    assert.equal(hostRows(first.text), SOFTWARE_PAGE_ROWS);
    assert.match(first.text, /Page 1 of 2/);
    assert.match(first.text, /href="\/console\/software\?name=openssl&amp;page=2">Next</);
    assert.match(first.text, /href="\/console\/software\.csv\?name=openssl">Export as CSV</, 'the export is of every page');

    const second = await client.call('GET', '/console/software?name=openssl&page=2');
    assert.equal(hostRows(second.text), 1);
    assert.match(second.text, /Page 2 of 2/);
    assert.match(second.text, /href="\/console\/software\?name=openssl">Previous</);
    assert.equal(hostRows((await client.call('GET', '/console/software?name=openssl&page=9')).text), 1, 'past the end: the last page');
    assert.equal((await client.call('GET', '/console/software?name=openssl&page=0')).status, 400);

    const csv = await client.call('GET', '/console/software.csv?name=openssl');
    assert.equal(csv.text.trim().split('\n').length, hosts + 1, 'a header and every host');
  } finally {
    client.close();
    await appliance.stop();
  }
});
