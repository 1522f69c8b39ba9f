import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { hashSecret, newId, newSecret } from '../lib/ids.ts';
import type { AdminApiToken, AdminRole, AdminUser, TokenScope } from '../model/admin.ts';
import type { AdminCredentialStore } from '../store/admin-credentials.ts';
import type { Stores } from '../store/index.ts';
import { INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { removeInitialPassword } from './initial-password.ts';
import type { LoginThrottle } from './login-throttle.ts';

export const FIRST_ADMIN_USERNAME = 'admin';
/** The label of the local admin CLI's credential (DATA_DIR/admin-cli.token): the one credential that may manage accounts. */
export const CLI_TOKEN_LABEL = 'local admin CLI';
/** The label of the bearer tokens POST /api/v1/auth/login issues. */
export const API_SESSION_LABEL = 'session';
/** The label of the console's cookie sessions (appliance/console): they authenticate the console only. */
export const CONSOLE_SESSION_LABEL = 'console';
/** The label of API tokens for automation: bearer credentials with a scope and an expiry, made in the console. */
export const API_TOKEN_LABEL = 'api';
/** The longest an API token may live (a year and a day: yearly jobs survive their own schedule's drift). */
export const MAX_API_TOKEN_DAYS = 366;
/** Tokens that a password change or reset ends: whoever knew the old password loses what it opened. */
const SESSION_LABELS = [API_SESSION_LABEL, CONSOLE_SESSION_LABEL] as const;
/** Absolute lifetime of a login session, API or console. */
export const SESSION_TTL_MS = 12 * 3_600_000;
/** The shortest password an admin may choose (NIST SP 800-63B §3.1.1.2 asks at least 8; we ask more of an appliance's admins). */
export const MIN_PASSWORD_LENGTH = 12;
export const MAX_PASSWORD_LENGTH = 256;
/** Username rule: what `admin create` accepts (letters, digits, `._-`, starting with a letter or digit). */
export const USERNAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';
const SCRYPT = { N: 16384, r: 8, p: 1, keyLength: 32 } as const;

export interface FirstAdmin {
  username: string;
  /** Shown once at first start; only its scrypt hash is kept. The first login must change it. */
  password: string;
  /** The credential of the local admin CLI, written to a 0600 file in the data directory. */
  cliToken: string;
}

/** Creates the first admin and the local CLI credential, in one transaction, when the appliance has no admin yet. */
export async function createFirstAdmin(stores: Stores, now: number): Promise<FirstAdmin | undefined> {
  const password = newPassword();
  const passwordHash = await hashPassword(password);
  return stores.transact(async (tx) => {
    if (await tx.adminCredentials.hasUsers()) return undefined;
    const userId = newId('adm');
    await tx.adminCredentials.insertUser({ id: userId, username: FIRST_ADMIN_USERNAME, passwordHash, role: 'admin', mustChangePassword: true, createdAt: now });
    const cliToken = newSecret('ctadm');
    await tx.adminCredentials.insertApiToken(newId('akey'), userId, hashSecret(cliToken), CLI_TOKEN_LABEL, now, null);
    return { username: FIRST_ADMIN_USERNAME, password, cliToken };
  });
}

export interface AdminAccountDeps {
  store: AdminCredentialStore;
  /** One per process, shared by the API login, the console login and password changes. */
  throttle: LoginThrottle;
  log: Logger;
  /** The data directory, whose one-time password file the first admin's first login removes. */
  dataDir: string;
}

/** One login attempt: the credentials and the address it came from (for the per-source lock). */
export interface LoginAttempt {
  username: string;
  password: string;
  source: string;
}

export interface Session {
  token: string;
  /** ms since the epoch. */
  expiresAt: number;
  /** The account holds a one-time password: this session may only change it (or log out). */
  mustChangePassword: boolean;
}

/** An account as the API lists it. */
export interface AdminAccount {
  username: string;
  role: AdminRole;
  disabledAt: number | null;
  mustChangePassword: boolean;
  createdAt: number;
}

/** What the CLI gets back after creating an account or resetting its password: the one-time password, shown once. */
export interface OneTimePassword {
  username: string;
  password: string;
  sessionsEnded: number;
}

/**
 * Owns admin accounts and their credentials: logins (API bearer and console cookie sessions),
 * password changes, and the local CLI's account management (create, reset, disable). Passwords are
 * scrypt-hashed in libuv's thread pool (decision 25), so no login blocks the event loop (heartbeats).
 */
export class AdminAccountService {
  readonly #deps: AdminAccountDeps;

  constructor(deps: AdminAccountDeps) {
    this.#deps = deps;
  }

  /**
   * Exchanges a username and password for a session labelled `label` (API_SESSION_LABEL or
   * CONSOLE_SESSION_LABEL) valid for SESSION_TTL_MS. Errors: ERR_LOGIN_LOCKED while the account or
   * the source address is locked after repeated failures (LoginThrottle; the password is not even
   * checked), ERR_LOGIN_FAILED for a wrong username or password or a disabled account. Every failure
   * is one audit line (username, source, count; never the password). The first admin's first login
   * removes DATA_DIR/initial-admin-password: its password has now been used by someone who holds it.
   */
  async login(attempt: LoginAttempt, label: typeof API_SESSION_LABEL | typeof CONSOLE_SESSION_LABEL, now: number): Promise<Session> {
    const user = await this.#checkPassword(attempt, now);
    const token = newSecret(label === CONSOLE_SESSION_LABEL ? 'ctcon' : 'ctses');
    const expiresAt = now + SESSION_TTL_MS;
    await this.#deps.store.pruneExpiredTokens(now);
    await this.#deps.store.insertApiToken(newId('akey'), user.id, hashSecret(token), label, now, expiresAt);
    if (user.username === FIRST_ADMIN_USERNAME) this.#forgetInitialPassword();
    this.#deps.log.info({ username: user.username, source: attempt.source, kind: label }, 'admin logged in');
    return { token, expiresAt, mustChangePassword: user.mustChangePassword };
  }

  /** The live credential behind a bearer or cookie secret. Errors: ERR_ADMIN_UNAUTHENTICATED. */
  async authenticate(secret: string, now: number): Promise<AdminApiToken> {
    const found = await this.#deps.store.apiTokenByHash(hashSecret(secret), now);
    if (!found) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'the admin credential is not valid');
    return found;
  }

  /** Of the credentials `ids`, those still live at `now` (not ended, not expired, account enabled), with their last use. */
  liveCredentials(ids: readonly string[], now: number): Promise<AdminApiToken[]> {
    return this.#deps.store.liveTokensById(ids, now);
  }

  /** Records a session's use for its idle timeout, at most once per `granularityMs`. */
  async touch(credential: AdminApiToken, now: number, granularityMs: number): Promise<void> {
    // The credential was just read with its last use: most requests need no write at all.
    if (credential.lastUsedAt !== null && now - credential.lastUsedAt < granularityMs) return;
    await this.#deps.store.touchApiToken(credential.id, now, granularityMs);
  }


  /** Ends the session behind `credential` (logout). The local CLI credential is not a session and stays. */
  async logout(credential: AdminApiToken): Promise<void> {
    if (credential.label === CLI_TOKEN_LABEL) return;
    await this.#deps.store.deleteApiToken(credential.id);
  }

  /**
   * The holder of a login session changes its own password: `current` must be right (throttled like a
   * login from `source`), `next` must pass checkNewPassword. The account's other sessions end; this one
   * stays and may now do what its role allows. Returns how many sessions ended.
   * Errors: ERR_LOGIN_LOCKED, ERR_LOGIN_FAILED (current password wrong), ERR_PASSWORD_REJECTED.
   */
  async changePassword(credential: AdminApiToken, change: { current: string; next: string; source: string }, now: number): Promise<number> {
    await this.#checkPassword({ username: credential.username, password: change.current, source: change.source }, now);
    checkNewPassword(credential.username, change.current, change.next);
    const ended = await this.#deps.store.replacePassword(credential.userId, { passwordHash: await hashPassword(change.next), mustChange: false, endLabels: SESSION_LABELS, keepTokenId: credential.id });
    if (credential.username === FIRST_ADMIN_USERNAME) this.#forgetInitialPassword();
    this.#deps.log.info({ username: credential.username, sessions_ended: ended }, 'admin changed password');
    return ended;
  }

  /**
   * Makes an API token for the owner of console session `owner`: its secret (shown once; only its
   * SHA-256 is kept), `scope` ('read' only reads, whatever the owner's role; 'write' acts with the
   * owner's role), valid `days` (1 to MAX_API_TOKEN_DAYS). A password change leaves it; disabling the
   * owner ends it. Errors: ERR_ADMIN_FORBIDDEN unless `owner` is a console session (a token does not
   * mint tokens), ERR_INVALID_ARGUMENT for days out of range.
   */
  async createApiToken(owner: AdminApiToken, request: { description: string; scope: TokenScope; days: number }, now: number): Promise<{ id: string; secret: string }> {
    if (owner.label !== CONSOLE_SESSION_LABEL) throw new CtOpsError('ERR_ADMIN_FORBIDDEN', 'API tokens are made in the console, by a logged-in admin');
    if (!Number.isInteger(request.days) || request.days < 1 || request.days > MAX_API_TOKEN_DAYS) throw new CtOpsError('ERR_INVALID_ARGUMENT', `an API token lives 1 to ${MAX_API_TOKEN_DAYS} days`, { field: 'days' });
    const secret = newSecret('ctapi');
    const id = newId('akey');
    await this.#deps.store.insertApiToken(id, owner.userId, hashSecret(secret), API_TOKEN_LABEL, now, now + request.days * 86_400_000, { scope: request.scope, description: request.description });
    this.#deps.log.info({ username: owner.username, token_id: id, scope: request.scope, days: request.days }, 'API token created');
    return { id, secret };
  }

  /** The owner's live API tokens, newest first (never their secrets). */
  apiTokensOf(owner: AdminApiToken, now: number): Promise<AdminApiToken[]> {
    return this.#deps.store.tokensOf(owner.userId, API_TOKEN_LABEL, now);
  }

  /** Revokes one of the owner's API tokens. Errors: ERR_API_TOKEN_NOT_FOUND (not the owner's, or gone). */
  async revokeApiToken(owner: AdminApiToken, tokenId: string): Promise<void> {
    if (!(await this.#deps.store.deleteTokenOf(owner.userId, API_TOKEN_LABEL, tokenId))) throw new CtOpsError('ERR_API_TOKEN_NOT_FOUND', `${owner.username} has no API token ${tokenId}`, { token_id: tokenId });
    this.#deps.log.info({ username: owner.username, token_id: tokenId }, 'API token revoked');
  }

  /** Every account, oldest first, without password hashes. */
  async list(): Promise<AdminAccount[]> {
    return (await this.#deps.store.listUsers()).map(({ username, role, disabledAt, mustChangePassword, createdAt }) => ({ username, role, disabledAt, mustChangePassword, createdAt }));
  }

  /**
   * Creates account `username` with `role` and a one-time password, shown once to the caller, which
   * its first login must change. Local CLI credential only (decision 80: a browser session may not
   * mint accounts). Errors: ERR_ADMIN_LOCAL_ONLY, ERR_ADMIN_USER_EXISTS.
   */
  async create(caller: AdminApiToken, username: string, role: AdminRole, now: number): Promise<OneTimePassword> {
    requireLocal(caller, 'creating an admin account', `admin create ${username}`);
    if (await this.#deps.store.userByName(username)) throw new CtOpsError('ERR_ADMIN_USER_EXISTS', `an admin is already named ${JSON.stringify(username)}`, { username });
    const password = newPassword();
    await this.#deps.store.insertUser({ id: newId('adm'), username, passwordHash: await hashPassword(password), role, mustChangePassword: true, createdAt: now });
    this.#deps.log.info({ username, role, by: caller.username }, 'admin account created');
    return { username, password, sessionsEnded: 0 };
  }

  /**
   * Gives account `username` a new one-time password, shown once to the caller, which its next login
   * must change; the account's login sessions end; the local CLI credential stays. Local CLI credential
   * only: a login session, which a browser or a log could give away, may not take an account over.
   * Errors: ERR_ADMIN_LOCAL_ONLY, ERR_ADMIN_USER_NOT_FOUND.
   */
  async resetPassword(caller: AdminApiToken, username: string): Promise<OneTimePassword> {
    requireLocal(caller, 'a password reset', `admin passwd ${username}`);
    const user = await this.#userNamed(username);
    const password = newPassword();
    const sessionsEnded = await this.#deps.store.replacePassword(user.id, { passwordHash: await hashPassword(password), mustChange: true, endLabels: SESSION_LABELS });
    if (user.username === FIRST_ADMIN_USERNAME) this.#forgetInitialPassword();
    this.#deps.log.info({ username: user.username, sessions_ended: sessionsEnded, by: caller.username }, 'admin password reset');
    return { username: user.username, password, sessionsEnded };
  }

  /**
   * Disables account `username`: it logs in to nothing and every credential it holds is deleted.
   * Refused for the account that holds the local CLI credential (the appliance's own way back in)
   * and for the last enabled admin. Local CLI credential only. Returns how many credentials ended.
   * Errors: ERR_ADMIN_LOCAL_ONLY, ERR_ADMIN_USER_NOT_FOUND, ERR_ADMIN_DISABLE_REFUSED.
   */
  async disable(caller: AdminApiToken, username: string, now: number): Promise<number> {
    requireLocal(caller, 'disabling an admin account', `admin disable ${username}`);
    const user = await this.#userNamed(username);
    if (user.id === caller.userId) throw new CtOpsError('ERR_ADMIN_DISABLE_REFUSED', `${JSON.stringify(username)} holds the local admin CLI credential and cannot be disabled`, { username });
    if (user.disabledAt !== null) return 0;
    if (user.role === 'admin' && (await this.#deps.store.enabledAdminCount()) <= 1) throw new CtOpsError('ERR_ADMIN_DISABLE_REFUSED', `${JSON.stringify(username)} is the last enabled admin`, { username });
    const ended = await this.#deps.store.disableUser(user.id, now);
    this.#deps.log.info({ username, credentials_ended: ended, by: caller.username }, 'admin account disabled');
    return ended;
  }

  async #userNamed(username: string): Promise<AdminUser> {
    const user = await this.#deps.store.userByName(username);
    if (!user) throw new CtOpsError('ERR_ADMIN_USER_NOT_FOUND', `no admin is named ${JSON.stringify(username)}`, { username });
    return user;
  }

  /** The account whose password this is, throttled (LoginThrottle); a disabled account fails like a wrong password. */
  async #checkPassword(attempt: LoginAttempt, now: number): Promise<AdminUser> {
    const { throttle, log } = this.#deps;
    const record = throttle.begin(attempt.username, attempt.source, now);
    const user = await this.#deps.store.userByName(attempt.username);
    // Hash even for an unknown user so the response time does not reveal which usernames exist.
    const matches = await verifyPassword(attempt.password, user?.passwordHash ?? DUMMY_HASH);
    if (!user || !matches || user.disabledAt !== null) {
      const audit = { username: attempt.username, source: attempt.source, failures: record.accountFailures };
      if (record.lockedUntil === undefined) log.warn(audit, 'admin login failed');
      else log.warn({ ...audit, locked_until: new Date(record.lockedUntil).toISOString() }, 'admin login failed; locked');
      throw new CtOpsError('ERR_LOGIN_FAILED', 'wrong username or password');
    }
    throttle.succeeded(attempt.username, attempt.source);
    return user;
  }

  /** Removes the one-time password file; a failure is logged, not thrown: the login or reset itself succeeded. */
  #forgetInitialPassword(): void {
    try {
      if (removeInitialPassword(this.#deps.dataDir)) this.#deps.log.info({ file: INITIAL_PASSWORD_FILE }, 'removed the one-time password file of the first admin');
    } catch (error) {
      this.#deps.log.warn({ err: error }, 'could not remove the one-time password file of the first admin');
    }
  }
}

/**
 * Whether `credential` may make a request needing `access`: 'read' for every enabled account,
 * 'write' for role admin only, and not for a read-only API token. A session whose account must change its password may do neither
 * (the password change and logout routes ask for 'session'). Errors: ERR_PASSWORD_CHANGE_REQUIRED,
 * ERR_ADMIN_FORBIDDEN.
 */
export function checkAccess(credential: AdminApiToken, access: 'public' | 'session' | 'read' | 'write'): void {
  if (access === 'public' || access === 'session') return;
  // The local CLI credential is root's on the appliance: no one-time password stands between it and its work.
  if (credential.mustChangePassword && credential.label !== CLI_TOKEN_LABEL) throw new CtOpsError('ERR_PASSWORD_CHANGE_REQUIRED', 'this account has a one-time password: change it first (POST /api/v1/auth/password, or the console)');
  if (access === 'write' && credential.role !== 'admin') throw new CtOpsError('ERR_ADMIN_FORBIDDEN', `${JSON.stringify(credential.username)} is a ${credential.role}: it may read, not change`, { username: credential.username, role: credential.role });
  if (access === 'write' && credential.scope === 'read') throw new CtOpsError('ERR_ADMIN_FORBIDDEN', 'this API token is read-only', { username: credential.username, scope: credential.scope });
}

/**
 * The rules a new password must pass: MIN_PASSWORD_LENGTH to MAX_PASSWORD_LENGTH characters, not the
 * username, not the current password (NIST SP 800-63B §3.1.1.2: length, no context-specific words;
 * no composition rules). Errors: ERR_PASSWORD_REJECTED.
 */
export function checkNewPassword(username: string, current: string, next: string): void {
  const length = [...next].length;
  if (length < MIN_PASSWORD_LENGTH || length > MAX_PASSWORD_LENGTH) throw new CtOpsError('ERR_PASSWORD_REJECTED', `a password has ${MIN_PASSWORD_LENGTH} to ${MAX_PASSWORD_LENGTH} characters`);
  if (next.toLowerCase() === username.toLowerCase()) throw new CtOpsError('ERR_PASSWORD_REJECTED', 'a password may not be the username');
  if (next === current) throw new CtOpsError('ERR_PASSWORD_REJECTED', 'the new password is the current one');
}

function requireLocal(caller: AdminApiToken, what: string, command: string): void {
  if (caller.label !== CLI_TOKEN_LABEL) throw new CtOpsError('ERR_ADMIN_LOCAL_ONLY', `${what} needs the local admin CLI credential: run \`ct-ops-appliance ${command}\` on the appliance`);
}

/** 144 random bits, URL-safe base64 (24 characters). */
function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

const scryptAsync = promisify<string, Buffer, number, ScryptOptions, Buffer>(scrypt);

/** `scrypt$N$r$p$salt$hash` (base64), computed in libuv's thread pool. */
async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(password, salt, SCRYPT.keyLength, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/** Checks a password against its stored hash in libuv's thread pool: a login never blocks the event loop (heartbeats). */
async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [scheme, n, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const actual = await scryptAsync(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return timingSafeEqual(actual, expected);
}

/**
 * Checked for an unknown username so that it costs one scrypt like a real user's hash. It matches
 * no password that matters (an unknown user fails anyway); built from constants, not by hashing at
 * module load, so importing this module costs nothing (the admin CLI's start).
 */
const DUMMY_HASH = ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, Buffer.alloc(16).toString('base64'), Buffer.alloc(SCRYPT.keyLength).toString('base64')].join('$');
