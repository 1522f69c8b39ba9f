export interface Organisation {
  id: string;
  name: string;
  /** ms since the epoch. */
  createdAt: number;
}

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
  /** ms since the epoch; null for a token that does not expire. */
  expiresAt: number | null;
}
