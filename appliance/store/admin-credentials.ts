import type { AdminApiToken, AdminUser } from '../model/admin.ts';
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

  async insertUser(id: string, username: string, passwordHash: string, now: number): Promise<void> {
    await this.#db.insertInto('admin_users').values({ id, username, password_hash: passwordHash, created_at: now }).execute();
  }

  async userByName(username: string): Promise<AdminUser | undefined> {
    const row = await this.#db.selectFrom('admin_users').select(['id', 'username', 'password_hash']).where('username', '=', username).executeTakeFirst();
    return row && { id: row.id, username: row.username, passwordHash: row.password_hash };
  }

  async insertApiToken(id: string, userId: string, secretHash: string, label: string, now: number, expiresAt: number | null): Promise<void> {
    await this.#db.insertInto('admin_api_tokens').values({ id, user_id: userId, secret_hash: secretHash, label, created_at: now, expires_at: expiresAt }).execute();
  }

  /** The live API token with this secret hash. */
  async apiTokenByHash(secretHash: string, now: number): Promise<AdminApiToken | undefined> {
    const row = await this.#db
      .selectFrom('admin_api_tokens as t')
      .innerJoin('admin_users as u', 'u.id', 't.user_id')
      .select(['t.id', 't.user_id', 'u.username', 't.label', 't.expires_at'])
      .where('t.secret_hash', '=', secretHash)
      .where((eb) => eb.or([eb('t.expires_at', 'is', null), eb('t.expires_at', '>', now)]))
      .executeTakeFirst();
    return row && { id: row.id, userId: row.user_id, username: row.username, label: row.label, expiresAt: row.expires_at };
  }

  /** Sets a user's password hash and deletes the user's tokens labelled `sessionLabel`, in one transaction; returns how many were deleted. */
  replacePassword(userId: string, passwordHash: string, sessionLabel: string): Promise<number> {
    return atomically(this.#db, async (db) => {
      await db.updateTable('admin_users').set({ password_hash: passwordHash }).where('id', '=', userId).execute();
      const deleted = await db.deleteFrom('admin_api_tokens').where('user_id', '=', userId).where('label', '=', sessionLabel).executeTakeFirst();
      return Number(deleted.numDeletedRows);
    });
  }

  async pruneExpiredTokens(now: number): Promise<number> {
    const result = await this.#db.deleteFrom('admin_api_tokens').where('expires_at', 'is not', null).where('expires_at', '<=', now).executeTakeFirst();
    return Number(result.numDeletedRows);
  }
}
