import type { NonceUse } from '../model/enrolment.ts';
import { compiledOnce } from './compiled-query.ts';
import { atomically, type Executor } from './unit-of-work.ts';

export type { NonceUse } from '../model/enrolment.ts';

/**
 * Expired rows deleted by each insert. Greater than one, so pruning outpaces inserting and
 * the table holds at most the nonces of the last acceptance window plus this batch, however
 * long the appliance runs; small, so no insert pays for a large delete.
 */
export const NONCE_PRUNE_BATCH = 8;

// The three statements of every registration, built once (compiled-query.ts).
const pruneExpiredBatch = compiledOnce((db, values: { now: number }) =>
  db
    .deleteFrom('register_nonces')
    .where((eb) =>
      eb(
        eb.refTuple('public_key', 'nonce'),
        'in',
        eb.selectFrom('register_nonces').select(['public_key', 'nonce']).where('expires_at', '<', values.now).orderBy('expires_at').limit(NONCE_PRUNE_BATCH).$asTuple('public_key', 'nonce'),
      ),
    )
    .returning('expires_at'),
);
const watermark = compiledOnce((db) => db.selectFrom('register_nonce_watermark').select('pruned_through').where('id', '=', 1));
const insertNonce = compiledOnce((db, values: { publicKey: Buffer; nonce: Buffer; expiresAt: number }) =>
  db
    .insertInto('register_nonces')
    .values({ public_key: values.publicKey, nonce: values.nonce, expires_at: values.expiresAt })
    // DO NOTHING rather than catching the key violation: on PostgreSQL a failed statement aborts the transaction.
    .onConflict((conflict) => conflict.columns(['public_key', 'nonce']).doNothing())
    .returning('expires_at'),
);

/**
 * Owns the register_nonces table: the (key, challenge) pairs of accepted Register requests (or
 * (key, nonce) in the legacy form), kept until a request carrying them could no longer be
 * accepted, so a replayed request is recognised even across an appliance restart; and
 * register_nonce_watermark, the latest expiry ever pruned, so it is recognised even after the
 * appliance's clock stepped forward (rows pruned early) and back.
 */
export class RegisterNonceStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  /** Records a nonce (expiresAt and now in ms since the epoch), first pruning a few expired ones; one transaction. */
  remember(publicKey: Buffer, nonce: Buffer, expiresAt: number, now: number): Promise<NonceUse> {
    return atomically(this.#db, async (db): Promise<NonceUse> => {
      await raiseWatermark(db, (await pruneExpiredBatch(db, { now })).rows);
      const [{ pruned_through: prunedThrough }] = (await watermark(db, {})).rows;
      if (expiresAt <= prunedThrough) return 'forgotten';
      const [inserted] = (await insertNonce(db, { publicKey, nonce, expiresAt })).rows;
      return inserted === undefined ? 'used' : 'new';
    });
  }

  /** Deletes every row expired by now (ms since the epoch); the number deleted. One transaction. */
  prune(now: number): Promise<number> {
    return atomically(this.#db, async (db) => raiseWatermark(db, await db.deleteFrom('register_nonces').where('expires_at', '<', now).returning('expires_at').execute()));
  }
}

/** Raises the watermark to the latest expiry among `pruned`; how many rows were pruned. */
async function raiseWatermark(db: Executor, pruned: readonly { expires_at: number }[]): Promise<number> {
  if (pruned.length === 0) return 0;
  const latest = pruned.reduce((max, row) => Math.max(max, row.expires_at), 0);
  await db.updateTable('register_nonce_watermark').set({ pruned_through: latest }).where('id', '=', 1).where('pruned_through', '<', latest).execute();
  return pruned.length;
}
