/**
 * How `ct-ops-bundle build` reaches the appliance when its token mode needs one (new, an existing
 * token): never by opening a database another process serves (decisions 100, 108). The data
 * directory's lock (appliance/lib/data-dir-lock.ts) decides, in one step with opening:
 *   - this command takes the lock → the appliance is stopped: its own stores, opened without
 *     migrating (an older schema is refused, ERR_SCHEMA_OUTDATED: start the appliance once), the lock
 *     held until the build is done, so the appliance cannot start under it;
 *   - the running appliance holds it → its admin API over HTTPS, with the local admin credential and
 *     the appliance's CA from the data directory (appliance/cli/admin-client.ts);
 *   - another build or a restore holds it → wait for it (builds serialise), up to LOCK_WAIT_MS, then
 *     ERR_DATA_DIR_LOCKED naming the holder.
 * Token mode none reaches no appliance at all. The native SQLite addon is loaded only here, so
 * `verify` runs where only the zip and the public key are.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import { AdminClient } from '../../appliance/cli/admin-client.ts';
import { DATABASE_FILE } from '../../appliance/lib/data-dir-files.ts';
import type { TokenAuthority } from '../build/token.ts';

/** A bundle build answers only once built: a real agent executable takes seconds to compress. */
const BUILD_CALL_TIMEOUT_MS = 300_000;

/** How long a build waits for another build (or a restore) to release the data directory. */
const LOCK_WAIT_MS = 300_000;

/** Each wait for the lock, between looks at who holds it (the appliance may start meanwhile). */
const LOCK_POLL_MS = 1_000;

export type ApplianceAccess =
  | { readonly kind: 'api'; readonly client: AdminClient }
  | { readonly kind: 'stopped'; readonly tokens: TokenAuthority; close(): Promise<void> };

/** Throws ERR_BUNDLE_INPUT_MISSING without a database (unless a serving appliance holds the data directory: PostgreSQL), ERR_SCHEMA_* for a stopped appliance's older or newer one, ERR_DATA_DIR_LOCKED, ERR_APPLIANCE_RUNNING. */
export async function reachAppliance(dataDir: string): Promise<ApplianceAccess> {
  const path = join(dataDir, DATABASE_FILE);
  const [{ assertDatabaseNotInUse }, { openStores }, { lockHolder, lockedError, tryLockDataDir }] = await Promise.all([
    import('../../appliance/store/database-copy.ts'),
    import('../../appliance/store/index.ts'),
    import('../../appliance/lib/data-dir-lock.ts'),
  ]);
  // An appliance serving from PostgreSQL has no appliance.db, but holds the lock: its API is the way in.
  if (!existsSync(path) && lockHolder(dataDir)?.holder !== 'serve') {
    throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `no appliance database at ${path} (is --data-dir the appliance's data directory?)`, { path });
  }
  const deadline = Date.now() + LOCK_WAIT_MS;
  let lock = tryLockDataDir(dataDir, 'bundle-build');
  while (lock === undefined) {
    if (lockHolder(dataDir)?.holder === 'serve') return { kind: 'api', client: new AdminClient(dataDir, { timeoutMs: BUILD_CALL_TIMEOUT_MS }) };
    if (Date.now() >= deadline) throw lockedError(dataDir);
    lock = tryLockDataDir(dataDir, 'bundle-build', LOCK_POLL_MS);
  }
  try {
    // A process without the lock (a tool, an appliance of an older version) may still have it open.
    assertDatabaseNotInUse(path);
    const stores = openStores(path, { migrate: false });
    try {
      const org = await stores.organisations.ensureDefault(Date.now());
      const held = lock;
      return {
        kind: 'stopped',
        tokens: { stores, orgId: org.id },
        close: async () => {
          await stores.close();
          held.release();
        },
      };
    } catch (error) {
      await stores.close();
      throw error;
    }
  } catch (error) {
    lock.release();
    throw error;
  }
}
