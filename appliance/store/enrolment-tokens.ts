import type { Db } from './database.ts';

export type Tags = Readonly<Record<string, string>>;

export interface EnrolmentToken {
  id: string;
  orgId: string;
  label: string;
  createdAt: number;
  createdBy: string;
  expiresAt: number;
  maxUses: number;
  uses: number;
  autoApprove: boolean;
  tags: Tags;
  /** Where the token came from: "admin" (API/CLI) or "install-bundle". */
  source: string;
  metadata: Readonly<Record<string, string>>;
  revokedAt: number | null;
}

export type NewEnrolmentToken = Omit<EnrolmentToken, 'uses' | 'revokedAt'> & { secretHash: string };

interface TokenRow {
  id: string;
  org_id: string;
  label: string;
  created_at: number;
  created_by: string;
  expires_at: number;
  max_uses: number;
  uses: number;
  auto_approve: number;
  tags: string;
  source: string;
  metadata: string;
  revoked_at: number | null;
}

const COLUMNS = 'id, org_id, label, created_at, created_by, expires_at, max_uses, uses, auto_approve, tags, source, metadata, revoked_at';

/** Owns the enrolment_tokens table. Secrets are never stored, only their hashes. */
export class EnrolmentTokenStore {
  readonly #insert;
  readonly #get;
  readonly #bySecretHash;
  readonly #list;
  readonly #consume;
  readonly #revoke;

  constructor(db: Db) {
    this.#insert = db.prepare(
      `INSERT INTO enrolment_tokens (id, org_id, secret_hash, label, created_at, created_by, expires_at, max_uses, uses, auto_approve, tags, source, metadata)
       VALUES (@id, @orgId, @secretHash, @label, @createdAt, @createdBy, @expiresAt, @maxUses, 0, @autoApprove, @tags, @source, @metadata)`,
    );
    this.#get = db.prepare<[string], TokenRow>(`SELECT ${COLUMNS} FROM enrolment_tokens WHERE id = ?`);
    this.#bySecretHash = db.prepare<[string], TokenRow>(`SELECT ${COLUMNS} FROM enrolment_tokens WHERE secret_hash = ?`);
    this.#list = db.prepare<[string], TokenRow>(`SELECT ${COLUMNS} FROM enrolment_tokens WHERE org_id = ? ORDER BY created_at, id`);
    // One statement checks and takes a use, so concurrent registrations cannot exceed max_uses.
    this.#consume = db.prepare(
      'UPDATE enrolment_tokens SET uses = uses + 1 WHERE id = ? AND revoked_at IS NULL AND expires_at > ? AND uses < max_uses',
    );
    this.#revoke = db.prepare('UPDATE enrolment_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL');
  }

  insert(token: NewEnrolmentToken): void {
    this.#insert.run({
      ...token,
      autoApprove: token.autoApprove ? 1 : 0,
      tags: JSON.stringify(token.tags),
      metadata: JSON.stringify(token.metadata),
    });
  }

  get(id: string): EnrolmentToken | undefined {
    const row = this.#get.get(id);
    return row && toToken(row);
  }

  findBySecretHash(secretHash: string): EnrolmentToken | undefined {
    const row = this.#bySecretHash.get(secretHash);
    return row && toToken(row);
  }

  list(orgId: string): EnrolmentToken[] {
    return this.#list.all(orgId).map(toToken);
  }

  /** Takes one use of a live token; false when it was expired, revoked or used up. */
  consume(id: string, now: number): boolean {
    return this.#consume.run(id, now).changes === 1;
  }

  /** Revokes a live token; false when it was already revoked. */
  revoke(id: string, now: number): boolean {
    return this.#revoke.run(now, id).changes === 1;
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
