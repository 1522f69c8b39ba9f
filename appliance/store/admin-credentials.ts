import type { Db } from './database.ts';

export interface AdminUser {
  id: string;
  username: string;
  passwordHash: string;
}

export interface AdminApiToken {
  id: string;
  userId: string;
  username: string;
  label: string;
  expiresAt: number | null;
}

/** Owns the admin_users and admin_api_tokens tables. */
export class AdminCredentialStore {
  readonly #countUsers;
  readonly #insertUser;
  readonly #userByName;
  readonly #insertToken;
  readonly #tokenByHash;
  readonly #pruneTokens;
  readonly #setPasswordHash;
  readonly #deleteSessions;
  readonly #replacePassword;

  constructor(db: Db) {
    this.#countUsers = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM admin_users');
    this.#insertUser = db.prepare('INSERT INTO admin_users (id, username, password_hash, created_at) VALUES (?, ?, ?, ?)');
    this.#userByName = db.prepare<[string], { id: string; username: string; password_hash: string }>(
      'SELECT id, username, password_hash FROM admin_users WHERE username = ?',
    );
    this.#insertToken = db.prepare(
      'INSERT INTO admin_api_tokens (id, user_id, secret_hash, label, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.#tokenByHash = db.prepare<[string, number], { id: string; user_id: string; username: string; label: string; expires_at: number | null }>(
      `SELECT t.id, t.user_id, u.username, t.label, t.expires_at FROM admin_api_tokens t JOIN admin_users u ON u.id = t.user_id
       WHERE t.secret_hash = ? AND (t.expires_at IS NULL OR t.expires_at > ?)`,
    );
    this.#pruneTokens = db.prepare('DELETE FROM admin_api_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?');
    this.#setPasswordHash = db.prepare('UPDATE admin_users SET password_hash = ? WHERE id = ?');
    this.#deleteSessions = db.prepare('DELETE FROM admin_api_tokens WHERE user_id = ? AND label = ?');
    this.#replacePassword = db.transaction((userId: string, passwordHash: string, sessionLabel: string): number => {
      this.#setPasswordHash.run(passwordHash, userId);
      return this.#deleteSessions.run(userId, sessionLabel).changes;
    });
  }

  hasUsers(): boolean {
    return (this.#countUsers.get()?.n ?? 0) > 0;
  }

  insertUser(id: string, username: string, passwordHash: string, now: number): void {
    this.#insertUser.run(id, username, passwordHash, now);
  }

  userByName(username: string): AdminUser | undefined {
    const row = this.#userByName.get(username);
    return row && { id: row.id, username: row.username, passwordHash: row.password_hash };
  }

  insertApiToken(id: string, userId: string, secretHash: string, label: string, now: number, expiresAt: number | null): void {
    this.#insertToken.run(id, userId, secretHash, label, now, expiresAt);
  }

  /** The live API token with this secret hash. */
  apiTokenByHash(secretHash: string, now: number): AdminApiToken | undefined {
    const row = this.#tokenByHash.get(secretHash, now);
    return row && { id: row.id, userId: row.user_id, username: row.username, label: row.label, expiresAt: row.expires_at };
  }

  /** Sets a user's password hash and deletes the user's tokens labelled `sessionLabel`, in one transaction; returns how many were deleted. */
  replacePassword(userId: string, passwordHash: string, sessionLabel: string): number {
    return this.#replacePassword(userId, passwordHash, sessionLabel);
  }

  pruneExpiredTokens(now: number): number {
    return this.#pruneTokens.run(now).changes;
  }
}
