import { newId } from '../lib/ids.ts';
import type { Organisation } from '../model/admin.ts';
import type { Executor } from './unit-of-work.ts';

export type { Organisation } from '../model/admin.ts';

const DEFAULT_ORGANISATION_NAME = 'default';

/** Owns the organisations and org_settings tables. */
export class OrganisationStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** The organisation a fresh appliance starts with, created on first call (`now` ms since the epoch). */
  async ensureDefault(now: number): Promise<Organisation> {
    const existing = await this.#db.selectFrom('organisations').select(['id', 'name', 'created_at']).where('name', '=', DEFAULT_ORGANISATION_NAME).executeTakeFirst();
    if (existing) return { id: existing.id, name: existing.name, createdAt: existing.created_at };
    const id = newId('org');
    await this.#db.insertInto('organisations').values({ id, name: DEFAULT_ORGANISATION_NAME, created_at: now }).execute();
    return { id, name: DEFAULT_ORGANISATION_NAME, createdAt: now };
  }

  async setting(orgId: string, key: string): Promise<string | undefined> {
    const row = await this.#db.selectFrom('org_settings').select('value').where('org_id', '=', orgId).where('key', '=', key).executeTakeFirst();
    return row?.value;
  }

  async putSetting(orgId: string, key: string, value: string): Promise<void> {
    await this.#db
      .insertInto('org_settings')
      .values({ org_id: orgId, key, value })
      .onConflict((conflict) => conflict.columns(['org_id', 'key']).doUpdateSet({ value }))
      .execute();
  }
}
