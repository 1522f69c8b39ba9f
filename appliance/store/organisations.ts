import type { Db } from './database.ts';
import { newId } from '../lib/ids.ts';

export interface Organisation {
  id: string;
  name: string;
  createdAt: number;
}

interface OrganisationRow {
  id: string;
  name: string;
  created_at: number;
}

const DEFAULT_ORGANISATION_NAME = 'default';

/** Owns the organisations and org_settings tables. */
export class OrganisationStore {
  readonly #byName;
  readonly #insert;
  readonly #getSetting;
  readonly #putSetting;

  constructor(db: Db) {
    this.#byName = db.prepare<[string], OrganisationRow>('SELECT id, name, created_at FROM organisations WHERE name = ?');
    this.#insert = db.prepare('INSERT INTO organisations (id, name, created_at) VALUES (?, ?, ?)');
    this.#getSetting = db.prepare<[string, string], { value: string }>('SELECT value FROM org_settings WHERE org_id = ? AND key = ?');
    this.#putSetting = db.prepare(
      'INSERT INTO org_settings (org_id, key, value) VALUES (?, ?, ?) ON CONFLICT (org_id, key) DO UPDATE SET value = excluded.value',
    );
  }

  /** The organisation a fresh appliance starts with, created on first call. */
  ensureDefault(now: number): Organisation {
    const existing = this.#byName.get(DEFAULT_ORGANISATION_NAME);
    if (existing) return toOrganisation(existing);
    const id = newId('org');
    this.#insert.run(id, DEFAULT_ORGANISATION_NAME, now);
    return { id, name: DEFAULT_ORGANISATION_NAME, createdAt: now };
  }

  setting(orgId: string, key: string): string | undefined {
    return this.#getSetting.get(orgId, key)?.value;
  }

  putSetting(orgId: string, key: string, value: string): void {
    this.#putSetting.run(orgId, key, value);
  }
}

function toOrganisation(row: OrganisationRow): Organisation {
  return { id: row.id, name: row.name, createdAt: row.created_at };
}
