import type { Db } from './database.ts';
import { sqliteCode } from './database.ts';

/**
 * Owns the register_nonces table: the (key, nonce) pairs of accepted Register
 * requests, kept until their timestamps fall out of the acceptance window, so a
 * replayed request is recognised even across an appliance restart.
 */
export class RegisterNonceStore {
  readonly #insert;
  readonly #prune;

  constructor(db: Db) {
    this.#insert = db.prepare('INSERT INTO register_nonces (public_key, nonce, expires_at) VALUES (?, ?, ?)');
    this.#prune = db.prepare('DELETE FROM register_nonces WHERE expires_at < ?');
  }

  /** Records a nonce; false when this key already used it. */
  remember(publicKey: Buffer, nonce: Buffer, expiresAt: number): boolean {
    try {
      this.#insert.run(publicKey, nonce, expiresAt);
      return true;
    } catch (error) {
      if (sqliteCode(error) === 'SQLITE_CONSTRAINT_PRIMARYKEY') return false;
      throw error;
    }
  }

  prune(now: number): number {
    return this.#prune.run(now).changes;
  }
}
