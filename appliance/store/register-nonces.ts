import type { Db } from './database.ts';
import { sqliteCode } from './database.ts';

/**
 * Expired rows deleted by each insert. Greater than one, so pruning outpaces inserting and
 * the table holds at most the nonces of the last acceptance window plus this batch, however
 * long the appliance runs; small, so no insert pays for a large delete.
 */
export const NONCE_PRUNE_BATCH = 8;

/**
 * Owns the register_nonces table: the (key, challenge) pairs of accepted Register requests (or
 * (key, nonce) in the legacy form), kept until a request carrying them could no longer be
 * accepted, so a replayed request is recognised even across an appliance restart.
 */
export class RegisterNonceStore {
  readonly #insert;
  readonly #pruneBatch;
  readonly #prune;

  constructor(db: Db) {
    this.#insert = db.prepare('INSERT INTO register_nonces (public_key, nonce, expires_at) VALUES (?, ?, ?)');
    this.#pruneBatch = db.prepare(
      `DELETE FROM register_nonces WHERE (public_key, nonce) IN
         (SELECT public_key, nonce FROM register_nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ${NONCE_PRUNE_BATCH})`,
    );
    this.#prune = db.prepare('DELETE FROM register_nonces WHERE expires_at < ?');
  }

  /** Records a nonce (expiresAt and now in ms since the epoch), first pruning a few expired ones; false when this key already used it. */
  remember(publicKey: Buffer, nonce: Buffer, expiresAt: number, now: number): boolean {
    this.#pruneBatch.run(now);
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
