/**
 * How `ct-ops-bundle build` reaches the appliance when its token mode needs one (new, an existing
 * token): never by opening a database another process serves (decision 100).
 *   - The appliance is running (a process holds its database: the exclusive-open test `restore`
 *     uses) → its admin API over HTTPS, with the local admin credential and the appliance's CA from
 *     the data directory (appliance/cli/admin-client.ts). The appliance builds the bundle — the same
 *     build, the token made and recorded by its own code — and the CLI downloads the zip.
 *   - It is stopped → the appliance's own stores, opened without migrating: a schema that is not
 *     the latest is refused (ERR_SCHEMA_OUTDATED: start the appliance once).
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

export type ApplianceAccess =
  | { readonly kind: 'api'; readonly client: AdminClient }
  | { readonly kind: 'stopped'; readonly tokens: TokenAuthority; close(): Promise<void> };

/** Throws ERR_BUNDLE_INPUT_MISSING without a database, ERR_SCHEMA_* for a stopped appliance's older or newer one. */
export async function reachAppliance(dataDir: string): Promise<ApplianceAccess> {
  const path = join(dataDir, DATABASE_FILE);
  if (!existsSync(path)) throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `no appliance database at ${path} (is --data-dir the appliance's data directory?)`, { path });
  const [{ assertDatabaseNotInUse }, { openStores }] = await Promise.all([import('../../appliance/store/database-copy.ts'), import('../../appliance/store/index.ts')]);
  try {
    assertDatabaseNotInUse(path);
  } catch (error) {
    if ((error as CtOpsError).code !== 'ERR_APPLIANCE_RUNNING') throw error;
    return { kind: 'api', client: new AdminClient(dataDir, { timeoutMs: BUILD_CALL_TIMEOUT_MS }) };
  }
  const stores = openStores(path, { migrate: false });
  try {
    const org = await stores.organisations.ensureDefault(Date.now());
    return { kind: 'stopped', tokens: { stores, orgId: org.id }, close: () => stores.close() };
  } catch (error) {
    await stores.close();
    throw error;
  }
}
