import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { approveAsReplacement } from '../appliance/hosts/replace.ts';
import { PresenceService } from '../appliance/presence/service.ts';
import { openPostgresStores, openStores, type Stores } from '../appliance/store/index.ts';
import { CtOpsError } from '../common/errors.ts';
import { sharedPostgres } from './helpers/postgres.ts';
import { singleInstance } from './helpers/single-instance.ts';

const dir = mkdtempSync(join(tmpdir(), 'ct-ops-replace-race-'));
after(async () => {
  await (await sharedPostgres()).stop();
  rmSync(dir, { recursive: true, force: true });
});
const log = pino({ level: 'silent' });
const ROUNDS = 5;

const backends: ReadonlyArray<{ name: string; open: () => Promise<Stores> }> = [
  { name: 'sqlite', open: async () => openStores(join(dir, 'appliance.db')) },
  { name: 'postgres', open: async () => openPostgresStores(await (await sharedPostgres()).createDatabase(`replace_race_${process.pid}`), { poolSize: 4 }) },
];

for (const backend of backends) {
  test(`two admins replacing one host with two different hosts at once: one wins, the other changes nothing [${backend.name}]`, { timeout: 60_000 }, async () => {
    const stores = await backend.open();
    try {
      const presence = new PresenceService({ stores, log, cluster: await singleInstance(stores, log), requeueTasks: () => undefined });
      const org = await stores.organisations.ensureDefault(1);
      const now = Date.now();
      const insert = (id: string, approval: 'active' | 'pending') => stores.hosts.insert({
        id, orgId: org.id, publicKey: Buffer.from(id.padEnd(32, '.')), hostname: id, machineFingerprint: `fp-${id}`, os: 'linux', arch: 'x64',
        agentVersion: '0.1.0', approval, enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: now,
      });
      for (let round = 0; round < ROUNDS; round += 1) {
        const [old, first, second] = [`hst_old${round}`, `hst_a${round}`, `hst_b${round}`];
        await insert(old, 'active');
        await insert(first, 'pending');
        await insert(second, 'pending');
        const outcomes = await Promise.allSettled([first, second].map((newId) => approveAsReplacement({ stores, presence, log }, org.id, newId, old, 'admin', now, true)));
        const winners = outcomes.flatMap((outcome, n) => (outcome.status === 'fulfilled' ? [[first, second][n]!] : []));
        assert.equal(winners.length, 1, `round ${round}: exactly one replacement`);
        const loser = winners[0] === first ? second : first;
        const refusal = outcomes.find((outcome) => outcome.status === 'rejected')!.reason as unknown;
        assert.ok(refusal instanceof CtOpsError && ['ERR_HOST_STATE_CONFLICT', 'ERR_HOST_NOT_FOUND'].includes(refusal.code), `round ${round}: ${String(refusal)}`);
        const [replaced, losing] = [(await stores.hosts.get(old))!, (await stores.hosts.get(loser))!];
        assert.equal(replaced.replacedBy, winners[0]);
        assert.deepEqual([losing.approval, losing.replaces], ['pending', null], 'the losing transaction rolled back whole');
      }
    } finally {
      await stores.close();
    }
  });
}
