import type { Db } from './database.ts';
import { sqliteCode } from './database.ts';

/**
 * Expired rows deleted by each insert. Greater than one, so pruning outpaces inserting and
 * the table holds at most the nonces of the last acceptance window plus this batch, however
 * long the appliance runs; small, so no insert pays for a large delete.
 */
export const NONCE_PRUNE_BATCH = 8;

/**
 * What remember() found: 'new' (recorded), 'used' (this key used it before), or 'forgotten'
 * (it expires at or before a row already pruned, so a first use could not be told from a replay).
 */
export type NonceUse = 'new' | 'used' | 'forgotten';

/**
 * Owns the register_nonces table: the (key, challenge) pairs of accepted Register requests (or
 * (key, nonce) in the legacy form), kept until a request carrying them could no longer be
 * accepted, so a replayed request is recognised even across an appliance restart; and
 * register_nonce_watermark, the latest expiry ever pruned, so it is recognised even after the
 * appliance's clock stepped forward (rows pruned early) and back.
 */
export class RegisterNonceStore {
  readonly #db: Db;
  readonly #insert;
  readonly #pruneBatch;
  readonly #prune;
  readonly #prunedThrough;
  readonly #raiseWatermark;

  constructor(db: Db) {
    this.#db = db;
    this.#insert = db.prepare('INSERT INTO register_nonces (public_key, nonce, expires_at) VALUES (?, ?, ?)');
    this.#pruneBatch = db.prepare(
      `DELETE FROM register_nonces WHERE (public_key, nonce) IN
         (SELECT public_key, nonce FROM register_nonces WHERE expires_at < ? ORDER BY expires_at LIMIT ${NONCE_PRUNE_BATCH})
       RETURNING expires_at`,
    );
    this.#prune = db.prepare('DELETE FROM register_nonces WHERE expires_at < ? RETURNING expires_at');
    this.#prunedThrough = db.prepare('SELECT pruned_through FROM register_nonce_watermark WHERE id = 1').pluck();
    this.#raiseWatermark = db.prepare('UPDATE register_nonce_watermark SET pruned_through = MAX(pruned_through, ?) WHERE id = 1');
  }

  /** Records a nonce (expiresAt and now in ms since the epoch), first pruning a few expired ones. */
  remember(publicKey: Buffer, nonce: Buffer, expiresAt: number, now: number): NonceUse {
    return this.#db.transaction((): NonceUse => {
      this.#pruned(this.#pruneBatch.all(now) as { expires_at: number }[]);
      if (expiresAt <= (this.#prunedThrough.get() as number)) return 'forgotten';
      try {
        this.#insert.run(publicKey, nonce, expiresAt);
        return 'new';
      } catch (error) {
        if (sqliteCode(error) === 'SQLITE_CONSTRAINT_PRIMARYKEY') return 'used';
        throw error;
      }
    })();
  }

  /** Deletes every row expired by now (ms since the epoch); the number deleted. */
  prune(now: number): number {
    return this.#db.transaction(() => this.#pruned(this.#prune.all(now) as { expires_at: number }[]))();
  }

  #pruned(rows: readonly { expires_at: number }[]): number {
    if (rows.length > 0) this.#raiseWatermark.run(rows.reduce((latest, row) => Math.max(latest, row.expires_at), 0));
    return rows.length;
  }
}
