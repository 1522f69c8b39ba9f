export interface Organisation {
  id: string;
  name: string;
  /** ms since the epoch. */
  createdAt: number;
}

/** 'admin' may do everything; 'viewer' may read and change nothing (issue 13, "roles"). */
export type AdminRole = 'admin' | 'viewer';
export const ADMIN_ROLES: readonly AdminRole[] = ['admin', 'viewer'];

/** What an API token may do: 'read' only, or whatever its owner's role allows ('write'). */
export type TokenScope = 'read' | 'write';
export const TOKEN_SCOPES: readonly TokenScope[] = ['read', 'write'];

export interface AdminUser {
  id: string;
  username: string;
  passwordHash: string;
  role: AdminRole;
  /** ms since the epoch; null while the account is enabled. */
  disabledAt: number | null;
  /** True while the account holds a one-time password: its sessions may only change it (or log out). */
  mustChangePassword: boolean;
  /** ms since the epoch. */
  createdAt: number;
}

export interface AdminApiToken {
  id: string;
  userId: string;
  username: string;
  role: AdminRole;
  mustChangePassword: boolean;
  label: string;
  /** ms since the epoch; null for a token that does not expire. */
  expiresAt: number | null;
  /** 'read' for an API token made read-only; 'write' otherwise (the owner's role decides). */
  scope: TokenScope;
  /** What its owner called an API token; '' for sessions and the CLI credential. */
  description: string;
  /** ms since the epoch the token last authenticated a request (written at most once a minute); null if never. */
  lastUsedAt: number | null;
  /** ms since the epoch. */
  createdAt: number;
}
