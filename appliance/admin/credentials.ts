import { randomBytes, scrypt, scryptSync, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { hashSecret, newId, newSecret } from '../lib/ids.ts';
import type { AdminApiToken } from '../model/admin.ts';
import type { AdminCredentialStore } from '../store/admin-credentials.ts';
import type { Stores } from '../store/index.ts';
import { INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { removeInitialPassword } from './initial-password.ts';
import type { LoginThrottle } from './login-throttle.ts';

export const FIRST_ADMIN_USERNAME = 'admin';
/** The label of the local admin CLI's credential (DATA_DIR/admin-cli.token): the one credential that may reset passwords. */
export const CLI_TOKEN_LABEL = 'local admin CLI';
/** The label of the tokens a login issues; a password reset deletes the user's. */
const SESSION_LABEL = 'session';
const SESSION_TTL_MS = 12 * 3_600_000;
const SCRYPT = { N: 16384, r: 8, p: 1, keyLength: 32 } as const;

export interface FirstAdmin {
  username: string;
  /** Shown once at first start; only its scrypt hash is kept. */
  password: string;
  /** The credential of the local admin CLI, written to a 0600 file in the data directory. */
  cliToken: string;
}

/** Creates the first admin and the local CLI credential, in one transaction, when the appliance has no admin yet. */
export function createFirstAdmin(stores: Stores, now: number): Promise<FirstAdmin | undefined> {
  return stores.transact(async (tx) => {
    if (await tx.adminCredentials.hasUsers()) return undefined;
    const userId = newId('adm');
    const password = newPassword();
    await tx.adminCredentials.insertUser(userId, FIRST_ADMIN_USERNAME, hashPassword(password), now);
    const cliToken = newSecret('ctadm');
    await tx.adminCredentials.insertApiToken(newId('akey'), userId, hashSecret(cliToken), CLI_TOKEN_LABEL, now, null);
    return { username: FIRST_ADMIN_USERNAME, password, cliToken };
  });
}

export interface LoginDeps {
  store: AdminCredentialStore;
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

/**
 * Exchanges a username and password for a session token valid for 12 hours.
 * Errors: ERR_LOGIN_LOCKED while the account or the source address is locked after repeated
 * failures (LoginThrottle; the password is not even checked), ERR_LOGIN_FAILED for a wrong
 * username or password. Every failure is one audit line (username, source, count; never the password).
 * The first admin's first login removes DATA_DIR/initial-admin-password: its password has now been
 * used by someone who holds it, and a copy on disk would only outlive its purpose (backups, root reads).
 */
export async function login(deps: LoginDeps, attempt: LoginAttempt, now: number): Promise<{ token: string; expiresAt: number }> {
  const { store, throttle, log } = deps;
  const record = throttle.begin(attempt.username, attempt.source, now);
  const user = await store.userByName(attempt.username);
  // Hash even for an unknown user so the response time does not reveal which usernames exist.
  const matches = await verifyPassword(attempt.password, user?.passwordHash ?? DUMMY_HASH);
  if (!user || !matches) {
    const audit = { username: attempt.username, source: attempt.source, failures: record.accountFailures };
    if (record.lockedUntil === undefined) log.warn(audit, 'admin login failed');
    else log.warn({ ...audit, locked_until: new Date(record.lockedUntil).toISOString() }, 'admin login failed; locked');
    throw new CtOpsError('ERR_LOGIN_FAILED', 'wrong username or password');
  }
  throttle.succeeded(attempt.username, attempt.source);
  const token = newSecret('ctses');
  const expiresAt = now + SESSION_TTL_MS;
  await store.pruneExpiredTokens(now);
  await store.insertApiToken(newId('akey'), user.id, hashSecret(token), SESSION_LABEL, now, expiresAt);
  if (user.username === FIRST_ADMIN_USERNAME) forgetInitialPassword(deps);
  return { token, expiresAt };
}

/**
 * Gives admin `username` a new random password, shown once to the caller; only its scrypt hash is
 * kept. The user's login sessions end (whoever knew the old password loses what it opened); the
 * local CLI credential stays. Only the local CLI credential (`callerIsLocalCli`: readable by root and
 * the service account) may reset: a login session, which a browser or a log could give away, may not
 * take an account over. Errors: ERR_ADMIN_LOCAL_ONLY, ERR_ADMIN_USER_NOT_FOUND.
 */
export async function resetPassword(deps: Pick<LoginDeps, 'store' | 'log' | 'dataDir'>, username: string, callerIsLocalCli: boolean): Promise<{ username: string; password: string; sessionsEnded: number }> {
  if (!callerIsLocalCli) throw new CtOpsError('ERR_ADMIN_LOCAL_ONLY', 'a password reset needs the local admin CLI credential: run `ct-ops-appliance admin reset-password` on the appliance');
  const user = await deps.store.userByName(username);
  if (!user) throw new CtOpsError('ERR_ADMIN_USER_NOT_FOUND', `no admin is named ${JSON.stringify(username)}`, { username });
  const password = newPassword();
  const sessionsEnded = await deps.store.replacePassword(user.id, hashPassword(password), SESSION_LABEL);
  if (user.username === FIRST_ADMIN_USERNAME) forgetInitialPassword(deps);
  deps.log.info({ username: user.username, sessions_ended: sessionsEnded }, 'admin password reset');
  return { username: user.username, password, sessionsEnded };
}

/** Removes the one-time password file; a failure is logged, not thrown: the login or reset itself succeeded. */
function forgetInitialPassword(deps: Pick<LoginDeps, 'log' | 'dataDir'>): void {
  try {
    if (removeInitialPassword(deps.dataDir)) deps.log.info({ file: INITIAL_PASSWORD_FILE }, 'removed the one-time password file of the first admin');
  } catch (error) {
    deps.log.warn({ err: error }, 'could not remove the one-time password file of the first admin');
  }
}

/** 144 random bits, URL-safe base64 (24 characters). */
function newPassword(): string {
  return randomBytes(18).toString('base64url');
}

export async function authenticateApiToken(store: AdminCredentialStore, token: string, now: number): Promise<AdminApiToken> {
  const found = await store.apiTokenByHash(hashSecret(token), now);
  if (!found) throw new CtOpsError('ERR_ADMIN_UNAUTHENTICATED', 'the admin credential is not valid');
  return found;
}

function hashPassword(password: string): string {
  const salt = randomBytes(16);
  const hash = scryptSync(password, salt, SCRYPT.keyLength, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return ['scrypt', SCRYPT.N, SCRYPT.r, SCRYPT.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

const scryptAsync = promisify<string, Buffer, number, ScryptOptions, Buffer>(scrypt);

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
