import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort } from './ports.ts';
import { LoggedProcess, run } from './processes.ts';
import { StopWaiting, waitFor } from './wait.ts';

/** Debian's postgresql package (scripts/test-prerequisites.sh installs it). */
const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
/** Every private cluster's directory starts so; a run sweeps those whose test process is gone. */
const CLUSTER_DIR_PREFIX = 'ct-ops-postgres-';
/** The file in a cluster's directory naming the test process that owns it. */
const OWNER_FILE = 'owner.pid';
const SUPERUSER = 'ctops';
const STARTUP_TIMEOUT_MS = 30_000;
const SHUTDOWN_TIMEOUT_MS = 10_000;

/** A PostgreSQL 15 server of this test process alone, on loopback. */
export interface PostgresCluster {
  /** postgres://ctops:PASSWORD@127.0.0.1:PORT/postgres: the superuser on the maintenance database. */
  readonly url: string;
  readonly port: number;
  /** The superuser's password (a random one per cluster; tests look for it in logs and errors). */
  readonly password: string;
  /** Creates an empty database owned by the superuser; resolves with its URL. `name`: [a-z0-9_], ≤ 63 characters. */
  createDatabase(name: string): Promise<string>;
  /** Fast shutdown (bounded; SIGKILL after SHUTDOWN_TIMEOUT_MS), then the directory is removed. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts a private cluster: initdb in a fresh temp directory, then the postmaster in the foreground
 * on 127.0.0.1 and a free port, its unix socket inside the directory (no clash with a system
 * cluster's /var/run/postgresql), fsync off (a test's data needs no crash safety). PostgreSQL refuses
 * to run as root, so under root (.ci) both run as the `postgres` system user the package creates
 * (else `nobody`) through setpriv. setpriv's --pdeathsig makes the postmaster shut down at once
 * when this test process dies, even by SIGKILL; a normal exit stops it and removes the directory;
 * a directory left by a killed run is swept by the next start. Password authentication (scram) so
 * the URL carries a password as it does in production.
 */
export async function startPostgres(): Promise<PostgresCluster> {
  sweepAbandonedClusters();
  const dir = mkdtempSync(join(tmpdir(), CLUSTER_DIR_PREFIX));
  writeFileSync(join(dir, OWNER_FILE), `${process.pid}\n`);
  const password = `pw-${Math.random().toString(36).slice(2)}`;
  const runAs = unprivilegedUser();
  const asUser = (command: string, args: readonly string[]): [string, string[]] =>
    runAs === undefined
      ? ['setpriv', ['--pdeathsig', 'QUIT', '--', command, ...args]]
      : ['setpriv', ['--reuid', runAs, '--regid', runAs, '--init-groups', '--pdeathsig', 'QUIT', '--', command, ...args]];
  const removeDir = (): void => rmSync(dir, { recursive: true, force: true });
  try {
    if (runAs !== undefined) chownSync(dir, uidOf(runAs), gidOf(runAs));
    writeFileSync(join(dir, 'password'), `${password}\n`, { mode: 0o600 });
    if (runAs !== undefined) chownSync(join(dir, 'password'), uidOf(runAs), gidOf(runAs));
    const initdb = await run(...asUser(join(POSTGRES_BIN, 'initdb'), ['-D', join(dir, 'data'), '-U', SUPERUSER, '--auth=scram-sha-256', `--pwfile=${join(dir, 'password')}`, '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync']), {}, 60_000);
    if (initdb.code !== 0) throw new Error(`initdb failed (${initdb.code}): ${initdb.stderr.slice(-2000)}`);
  } catch (error) {
    removeDir();
    throw error;
  }
  // Another process may take the free port before the postmaster binds it: start again on a new one.
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await startPostmaster(dir, password, asUser, removeDir);
    } catch (error) {
      if (!(error instanceof PortTaken) || attempt >= PORT_ATTEMPTS) {
        removeDir();
        throw error;
      }
    }
  }
}

/** Starts on a lost free-port race before giving up. */
const PORT_ATTEMPTS = 3;

/** The postmaster could not bind its port: another process took it after freePort chose it. */
class PortTaken extends StopWaiting {}

async function startPostmaster(dir: string, password: string, asUser: (command: string, args: readonly string[]) => [string, string[]], removeDir: () => void): Promise<PostgresCluster> {
  const port = await freePort();
  const server = new LoggedProcess(...asUser(join(POSTGRES_BIN, 'postgres'), [
    '-D', join(dir, 'data'),
    '-c', `port=${port}`,
    '-c', 'listen_addresses=127.0.0.1',
    '-c', `unix_socket_directories=${dir}`,
    '-c', 'fsync=off',
    '-c', 'synchronous_commit=off',
    '-c', 'full_page_writes=off',
    '-c', 'max_connections=100',
  ]));
  const url = `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/postgres`;
  let stopped: Promise<void> | undefined;
  const killAtExit = (): void => {
    // Synchronous: the postmaster's immediate shutdown (SIGQUIT) ends its children too.
    server.child.kill('SIGQUIT');
    removeDir();
  };
  process.once('exit', killAtExit);
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off('exit', killAtExit);
      await server.stop('SIGINT', SHUTDOWN_TIMEOUT_MS);
      removeDir();
    })();
    return stopped;
  };
  try {
    await waitFor('the private PostgreSQL cluster to accept connections', async () => {
      if (!server.running) {
        if (/could not bind|Address already in use/.test(server.stderr)) throw new PortTaken(`port ${port} was taken before postgres bound it`);
        throw new StopWaiting(`postgres exited: ${server.stderr.slice(-2000)}`);
      }
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
      try {
        await client.connect();
        return true;
      } finally {
        await client.end().catch(() => undefined);
      }
    }, STARTUP_TIMEOUT_MS, 100);
  } catch (error) {
    if (error instanceof PortTaken) {
      process.off('exit', killAtExit); // the directory stays for the next attempt
      throw error;
    }
    await stop();
    throw error;
  }
  return {
    url,
    port,
    password,
    createDatabase: async (name: string): Promise<string> => {
      if (!/^[a-z0-9_]{1,63}$/.test(name)) throw new Error(`database name ${JSON.stringify(name)}: use [a-z0-9_], at most 63 characters`);
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://${SUPERUSER}:${password}@127.0.0.1:${port}/${name}`;
    },
    stop,
  };
}

let shared: Promise<PostgresCluster> | undefined;

/**
 * One cluster for the whole test file (node --test runs each file in its own process), started on
 * first use; tests take a fresh database each with `createDatabase`. Stopped when the process exits.
 */
export function sharedPostgres(): Promise<PostgresCluster> {
  shared ??= startPostgres();
  return shared;
}

/** The system user the cluster runs as when this process is root; undefined when it is not (it runs as us). */
function unprivilegedUser(): string | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const users = readFileSync('/etc/passwd', 'utf8');
  return /^postgres:/m.test(users) ? 'postgres' : 'nobody';
}

function passwdField(user: string, index: 2 | 3): number {
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((entry) => entry.startsWith(`${user}:`));
  if (line === undefined) throw new Error(`no user ${user} in /etc/passwd`);
  return Number(line.split(':')[index]);
}
const uidOf = (user: string): number => passwdField(user, 2);
const gidOf = (user: string): number => passwdField(user, 3);

/**
 * Removes the cluster directories of test processes that are gone (killed before their exit hook
 * ran). Their postmasters shut down when those processes died (--pdeathsig); one still alive is
 * sent SIGQUIT first, from its postmaster.pid.
 */
function sweepAbandonedClusters(): void {
  const uid = process.getuid?.();
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(CLUSTER_DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    // Per directory: another user's leftover (EACCES) or one removed meanwhile must not stop this start.
    try {
      // Only our own (root may remove any): another user's run is theirs to sweep.
      if (uid !== 0 && statSync(dir).uid !== uid) continue;
      const owner = Number.parseInt(readTextOr(join(dir, OWNER_FILE), ''), 10);
      if (Number.isInteger(owner) && isAlive(owner)) continue;
      const postmaster = Number.parseInt(readTextOr(join(dir, 'data', 'postmaster.pid'), '').split('\n')[0] ?? '', 10);
      // The pid may have been reused since: signal it only if it is a postgres process.
      if (Number.isInteger(postmaster) && isAlive(postmaster) && readTextOr(`/proc/${postmaster}/cmdline`, '').includes('postgres')) {
        process.kill(postmaster, 'SIGQUIT');
      }
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Left for its owner, or gone meanwhile.
    }
  }
}

function readTextOr(path: string, fallback: string): string {
  try {
    return existsSync(path) ? readFileSync(path, 'utf8') : fallback;
  } catch {
    return fallback;
  }
}

/** Whether a process with this id exists (EPERM: it does, owned by another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

