import type { Selectable } from 'kysely';
import type { EnrolmentToken, NewEnrolmentToken, Tags } from '../model/enrolment.ts';
import { compiledOnce } from './compiled-query.ts';
import type { EnrolmentTokensTable } from './schema.ts';
import type { Executor } from './unit-of-work.ts';

export type { EnrolmentToken, NewEnrolmentToken, Tags } from '../model/enrolment.ts';

const COLUMNS = ['id', 'org_id', 'label', 'created_at', 'created_by', 'expires_at', 'max_uses', 'uses', 'auto_approve', 'tags', 'source', 'metadata', 'revoked_at'] as const;

// The lookup and the use every registration runs, built once (compiled-query.ts).
const tokenBySecretHash = compiledOnce((db, values: { secretHash: string }) => db.selectFrom('enrolment_tokens').select(COLUMNS).where('secret_hash', '=', values.secretHash));
const consumeUse = compiledOnce((db, values: { id: string; now: number }) =>
  db
    .updateTable('enrolment_tokens')
    .set((eb) => ({ uses: eb('uses', '+', 1) }))
    .where('id', '=', values.id)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', values.now)
    .whereRef('uses', '<', 'max_uses'),
);
type TokenRow = Pick<Selectable<EnrolmentTokensTable>, (typeof COLUMNS)[number]>;

/** Owns the enrolment_tokens table. Secrets are never stored, only their hashes. */
export class EnrolmentTokenStore {
  readonly #db: Executor;

  constructor(executor: Executor) {
    this.#db = executor;
  }

  async insert(token: NewEnrolmentToken): Promise<void> {
    await this.#db
      .insertInto('enrolment_tokens')
      .values({
        id: token.id,
        org_id: token.orgId,
        secret_hash: token.secretHash,
        label: token.label,
        created_at: token.createdAt,
        created_by: token.createdBy,
        expires_at: token.expiresAt,
        max_uses: token.maxUses,
        uses: 0,
        auto_approve: token.autoApprove ? 1 : 0,
        tags: JSON.stringify(token.tags),
        source: token.source,
        metadata: JSON.stringify(token.metadata),
      })
      .execute();
  }

  async get(id: string): Promise<EnrolmentToken | undefined> {
    const row = await this.#db.selectFrom('enrolment_tokens').select(COLUMNS).where('id', '=', id).executeTakeFirst();
    return row && toToken(row);
  }

  async findBySecretHash(secretHash: string): Promise<EnrolmentToken | undefined> {
    const [row] = (await tokenBySecretHash(this.#db, { secretHash })).rows;
    return row && toToken(row);
  }

  async list(orgId: string): Promise<EnrolmentToken[]> {
    const rows = await this.#db.selectFrom('enrolment_tokens').select(COLUMNS).where('org_id', '=', orgId).orderBy('created_at').orderBy('id').execute();
    return rows.map(toToken);
  }

  /**
   * Takes one use of a live token; false when it was expired, revoked or used up. One statement
   * checks and takes the use, so concurrent registrations cannot exceed max_uses.
   */
  async consume(id: string, now: number): Promise<boolean> {
    const result = await consumeUse(this.#db, { id, now });
    return Number(result.numAffectedRows) === 1;
  }

  /** Revokes a live token; false when it was already revoked. */
  async revoke(id: string, now: number): Promise<boolean> {
    const result = await this.#db.updateTable('enrolment_tokens').set({ revoked_at: now }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    return Number(result.numUpdatedRows) === 1;
  }
}

function toToken(row: TokenRow): EnrolmentToken {
  return {
    id: row.id,
    orgId: row.org_id,
    label: row.label,
    createdAt: row.created_at,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    maxUses: row.max_uses,
    uses: row.uses,
    autoApprove: row.auto_approve === 1,
    tags: JSON.parse(row.tags) as Tags,
    source: row.source,
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    revokedAt: row.revoked_at,
  };
}
