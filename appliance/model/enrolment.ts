/** Tag name → value, as set on an enrolment token and carried by the hosts it enrolled. */
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

/**
 * What remembering a Register nonce found: 'new' (recorded), 'used' (this key used it before), or
 * 'forgotten' (it expires at or before a row already pruned, so a first use could not be told from a replay).
 */
export type NonceUse = 'new' | 'used' | 'forgotten';
