import type { AdminApiToken, AdminRole, AdminUser, TokenScope } from '../model/admin.ts';
import { atomically, type Executor } from './unit-of-work.ts';

export type { AdminApiToken, AdminUser } from '../model/admin.ts';

/** Owns the admin_users and admin_api_tokens tables. Times are ms since the epoch. */
export class AdminCredentialStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  async hasUsers(): Promise<boolean> {
    const row = await this.#db.selectFrom('admin_users').select('id').limit(1).executeTakeFirst();
    return row !== undefined;
  }

  /** Errors: the store's unique violation when the username is taken (the caller checks first and maps it). */
  async insertUser(user: Omit<AdminUser, 'disabledAt'>): Promise<void> {
    await this.#db
      .insertInto('admin_users')
      .values({ id: user.id, username: user.username, password_hash: user.passwordHash, created_at: user.createdAt, role: user.role, must_change_password: user.mustChangePassword ? 1 : 0 })
      .execute();
  }

  async userByName(username: string): Promise<AdminUser | undefined> {
    const row = await this.#db.selectFrom('admin_users').selectAll().where('username', '=', username).executeTakeFirst();
    return row && userOf(row);
  }

  /** Every account, oldest first. */
  async listUsers(): Promise<AdminUser[]> {
    const rows = await this.#db.selectFrom('admin_users').selectAll().orderBy('created_at').orderBy('id').execute();
    return rows.map(userOf);
  }

  /** How many enabled accounts have role 'admin'. */
  async enabledAdminCount(): Promise<number> {
    const row = await this.#db.selectFrom('admin_users').select((eb) => eb.fn.countAll<number | string>().as('n')).where('role', '=', 'admin').where('disabled_at', 'is', null).executeTakeFirstOrThrow();
    return Number(row.n);
  }

  async insertApiToken(id: string, userId: string, secretHash: string, label: string, now: number, expiresAt: number | null, api: { scope: TokenScope; description: string } = { scope: 'write', description: '' }): Promise<void> {
    await this.#db
      .insertInto('admin_api_tokens')
      .values({ id, user_id: userId, secret_hash: secretHash, label, created_at: now, expires_at: expiresAt, scope: api.scope, description: api.description })
      .execute();
  }

  /** The live tokens of one user with one label (its API tokens), newest first. */
  async tokensOf(userId: string, label: string, now: number): Promise<AdminApiToken[]> {
    const rows = await this.#liveTokens(now)
      .where('t.user_id', '=', userId)
      .where('t.label', '=', label)
      .orderBy('t.created_at', 'desc')
      .orderBy('t.id', 'desc')
      .execute();
    return rows.map(tokenOf);
  }

  /** Deletes token `id` if it is `userId`'s and labelled `label`; false when there is no such token. */
  async deleteTokenOf(userId: string, label: string, id: string): Promise<boolean> {
    const deleted = await this.#db.deleteFrom('admin_api_tokens').where('id', '=', id).where('user_id', '=', userId).where('label', '=', label).executeTakeFirst();
    return Number(deleted.numDeletedRows) > 0;
  }

  /** admin_api_tokens not expired at `now` (ms), of enabled accounts, with their owner's username, role and password state. */
  #liveTokens(now: number) {
    return this.#db
      .selectFrom('admin_api_tokens as t')
      .innerJoin('admin_users as u', 'u.id', 't.user_id')
      .select(['t.id', 't.user_id', 'u.username', 'u.role', 'u.must_change_password', 't.label', 't.expires_at', 't.last_used_at', 't.created_at', 't.scope', 't.description'])
      .where('u.disabled_at', 'is', null)
      .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', now)]));
  }

  /** The live API token with this secret hash, of an enabled account. */
  async apiTokenByHash(secretHash: string, now: number): Promise<AdminApiToken | undefined> {
    const row = await this.#liveTokens(now)
      .where('t.secret_hash', '=', secretHash)
      .executeTakeFirst();
    return row && tokenOf(row);
  }

  /** Of the tokens `ids`, those still live (not expired, not deleted) of enabled accounts. */
  async liveTokensById(ids: readonly string[], now: number): Promise<AdminApiToken[]> {
    if (ids.length === 0) return [];
    const rows = await this.#liveTokens(now)
      .where('t.id', 'in', [...ids])
      .execute();
    return rows.map(tokenOf);
  }

  /**
   * Records that token `id` authenticated a request at `now`, unless it already did within
   * `granularityMs` (one conditional UPDATE: a busy session writes at most once per granularity).
   */
  async touchApiToken(id: string, now: number, granularityMs: number): Promise<void> {
    await this.#db
      .updateTable('admin_api_tokens')
      .set({ last_used_at: now })
      .where('id', '=', id)
      .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<=', now - granularityMs)]))
      .execute();
  }

  async deleteApiToken(id: string): Promise<void> {
    await this.#db.deleteFrom('admin_api_tokens').where('id', '=', id).execute();
  }

  /**
   * Sets a user's password hash and whether it must be changed, and deletes the user's tokens whose
   * label is in `endLabels` except `keepTokenId` (the session that changed its own password), in one
   * transaction; returns how many were deleted.
   */
  replacePassword(userId: string, change: { passwordHash: string; mustChange: boolean; endLabels: readonly string[]; keepTokenId?: string }): Promise<number> {
    return atomically(this.#db, async (db) => {
      await db.updateTable('admin_users').set({ password_hash: change.passwordHash, must_change_password: change.mustChange ? 1 : 0 }).where('id', '=', userId).execute();
      const deleted = await db
        .deleteFrom('admin_api_tokens')
        .where('user_id', '=', userId)
        .where('label', 'in', [...change.endLabels])
        .$if(change.keepTokenId !== undefined, (query) => query.where('id', '!=', change.keepTokenId as string))
        .executeTakeFirst();
      return Number(deleted.numDeletedRows);
    });
  }

  /** Marks the account disabled and deletes every token it holds, in one transaction; returns how many tokens were deleted. */
  disableUser(userId: string, now: number): Promise<number> {
    return atomically(this.#db, async (db) => {
      await db.updateTable('admin_users').set({ disabled_at: now }).where('id', '=', userId).where('disabled_at', 'is', null).execute();
      const deleted = await db.deleteFrom('admin_api_tokens').where('user_id', '=', userId).executeTakeFirst();
      return Number(deleted.numDeletedRows);
    });
  }

  async pruneExpiredTokens(now: number): Promise<number> {
    const result = await this.#db.deleteFrom('admin_api_tokens').where('expires_at', 'is not', null).where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}

function userOf(row: { id: string; username: string; password_hash: string; role: AdminRole; disabled_at: number | null; must_change_password: 0 | 1; created_at: number }): AdminUser {
  return {
    id: row.id,
    username: row.username,
    passwordHash: row.password_hash,
    role: row.role,
    disabledAt: row.disabled_at,
    mustChangePassword: row.must_change_password === 1,
    createdAt: row.created_at,
  };
}

function tokenOf(row: {
  id: string;
  user_id: string;
  username: string;
  role: AdminRole;
  must_change_password: 0 | 1;
  label: string;
  expires_at: number | null;
  last_used_at: number | null;
  created_at: number;
  scope: TokenScope;
  description: string;
}): AdminApiToken {
  return {
    id: row.id,
    userId: row.user_id,
    username: row.username,
    role: row.role,
    mustChangePassword: row.must_change_password === 1,
    label: row.label,
    expiresAt: row.expires_at,
    lastUsedAt: row.last_used_at,
    createdAt: row.created_at,
    scope: row.scope,
    description: row.description,
  };
}
