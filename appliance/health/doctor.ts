import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync, statfsSync, statSync, type Stats } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { CA_CERT_FILE, CLI_CREDENTIAL_FILE, DATABASE_FILE, INITIAL_PASSWORD_FILE } from '../lib/data-dir-files.ts';
import { CA_KEY_FILE, SERVER_CERT_FILE, SERVER_KEY_FILE } from '../pki/certificates.ts';
import { JWT_KEY_FILE } from '../pki/jwt-signing-key.ts';
import { BUNDLE_KEY_FILE } from '../pki/signing-keys.ts';
import type { DatabaseLocation } from '../config/database-url.ts';
import { inspectDatabase } from '../store/database.ts';
import { MIGRATIONS } from '../store/migrations/index.ts';
import { POSTGRES_MIGRATIONS } from '../store/migrations/postgres/index.ts';
import { postgresSchemaVersion } from '../store/postgres-migrate.ts';
import { storageFailure } from '../store/storage-failure.ts';
import { latestSchemaVersion } from '../store/schema-version.ts';
import { probeHealthz, probePort, type HealthzAnswer, type PortState } from './doctor-probes.ts';

/** One line of `ct-ops-appliance doctor`: `warn` needs attention soon, `fail` needs it now. */
export interface DoctorCheck {
  readonly name: string;
  readonly status: 'ok' | 'warn' | 'fail';
  readonly detail: string;
}

/** What the doctor looks at: the settings of the appliance's configuration and the time to judge by. */
export interface DoctorInputs {
  readonly dataDir: string;
  /** Where the store is (the `database` setting): the SQLite file in dataDir, or a PostgreSQL server. */
  readonly database: DatabaseLocation;
  /** The listen address of the configuration; a wildcard is probed on loopback. */
  readonly listen: string;
  readonly httpPort: number;
  readonly grpcPort: number;
  /** The names the configuration asks the server certificate to carry. */
  readonly sans: readonly string[];
  readonly now: Date;
  /** A file written when this build was made (the image's files carry the release time): the clock must not be before it. */
  readonly buildFile: string;
  /** True when the appliance must be running (--wait-healthy): not listening is then a failure, not a note. */
  readonly expectRunning: boolean;
  /** The account database that says whether the service account exists (default /etc/passwd). */
  readonly passwdFile?: string;
}

/** The account the installed unit runs as (image/install.sh creates it; systemd/ct-ops-appliance.service User=). */
export const SERVICE_ACCOUNT = 'ct-ops-appliance';

/** Secret files of the data directory: readable by the service account only (mode 0600), PEM keys that parse. */
const PEM_KEY_FILES: ReadonlySet<string> = new Set([CA_KEY_FILE, SERVER_KEY_FILE, JWT_KEY_FILE, BUNDLE_KEY_FILE]);
const SECRET_FILES = [...PEM_KEY_FILES, CLI_CREDENTIAL_FILE];
/** Secret files that exist only for a while: absent is their normal state. */
const TRANSIENT_SECRET_FILES: ReadonlySet<string> = new Set([INITIAL_PASSWORD_FILE]);
/** A certificate this close to its end is reported (the appliance reissues its server certificate itself at start). */
const CERTIFICATE_WARN_DAYS = 30;
const DAY_MS = 86_400_000;
/** Free space on the data directory's volume below which the doctor warns, and fails (a full volume refuses writes: ERR_STORAGE_FULL). */
const DISK_WARN_BYTES = 1024 ** 3;
const DISK_FAIL_BYTES = 100 * 1024 ** 2;

/**
 * Runs every check, in the order printed. It writes no file of its own; its read-only open of the
 * database may create appliance.db-wal/-shm when they are missing (SQLite gives them the owner of
 * the database file when the doctor runs as root: os_unix.c robustFchown), as the appliance's next start would.
 */
export async function runDoctor(inputs: DoctorInputs): Promise<DoctorCheck[]> {
  const owner = expectedOwner(inputs.passwdFile ?? '/etc/passwd');
  const database = inputs.database.kind === 'postgres' ? await checkPostgres(inputs.database.url, inputs.database.display) : checkDatabase(inputs.dataDir);
  const checks = [checkDataDir(inputs.dataDir, owner), ...checkSecretFiles(inputs.dataDir, owner), ...checkCertificates(inputs), checkDisk(inputs.dataDir), database, checkClock(inputs)];
  const host = probeHost(inputs.listen);
  const ca = readOptional(join(inputs.dataDir, CA_CERT_FILE));
  const [http, grpc] = await Promise.all([probePort(host, inputs.httpPort, ca), probePort(host, inputs.grpcPort, ca)]);
  checks.push(checkPorts(inputs, http, grpc));
  checks.push(checkHealthz(inputs, http === 'ours' ? await probeHealthz(host, inputs.httpPort, ca) : undefined));
  return checks;
}

/** Polls /healthz every 500 ms until it answers 200 or `timeoutMs` has passed; true when healthy. */
export async function waitHealthy(inputs: Pick<DoctorInputs, 'dataDir' | 'listen' | 'httpPort'>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ca = readOptional(join(inputs.dataDir, CA_CERT_FILE));
    if (ca !== undefined && (await probeHealthz(probeHost(inputs.listen), inputs.httpPort, ca))?.status === 200) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

/** Who must own the data directory and its secrets, and why that account. */
interface ExpectedOwner {
  readonly uid: number;
  readonly who: string;
}

/**
 * The service account when the account database has it (an installed appliance runs as it, and a
 * root-owned data directory would stop it at its next start), otherwise the user running the
 * doctor (a clone, a test). Read from the file, not os.userInfo(), which knows only the current user.
 */
function expectedOwner(passwdFile: string): ExpectedOwner {
  const line = (readOptional(passwdFile) ?? '').split('\n').find((entry) => entry.startsWith(`${SERVICE_ACCOUNT}:`));
  const uid = Number(line?.split(':')[2]);
  if (line !== undefined && Number.isInteger(uid)) return { uid, who: `the service account ${SERVICE_ACCOUNT} (uid ${uid})` };
  const self = process.geteuid?.() ?? 0;
  return { uid: self, who: `uid ${self}, who runs the doctor (no ${SERVICE_ACCOUNT} account in ${passwdFile})` };
}

function checkDataDir(dataDir: string, owner: ExpectedOwner): DoctorCheck {
  const stats = statOrError(dataDir);
  if (typeof stats === 'string') return fail('data-dir', `${dataDir}: ${stats}`);
  if (!stats.isDirectory()) return fail('data-dir', `${dataDir} is not a directory`);
  const mode = stats.mode & 0o777;
  if ((mode & 0o077) !== 0) return fail('data-dir', `${dataDir} has mode ${octal(mode)}: others can read the keys' folder (chmod 0700)`);
  if (stats.uid !== owner.uid) return fail('data-dir', `${dataDir} is owned by uid ${stats.uid}, not by ${owner.who} (chown -R)`);
  return ok('data-dir', `${dataDir}: mode ${octal(mode)}, owner ${owner.who}`);
}

function checkSecretFiles(dataDir: string, owner: ExpectedOwner): DoctorCheck[] {
  return [...SECRET_FILES, ...TRANSIENT_SECRET_FILES].map((name) => {
    const path = join(dataDir, name);
    const check = `file ${name}`;
    const stats = statOrError(path);
    if (stats === 'missing' && TRANSIENT_SECRET_FILES.has(name)) return ok(check, 'absent (removed at the first login of the first admin)');
    if (stats === 'missing') return warn(check, `${path} does not exist yet (the appliance creates it at its first start)`);
    if (typeof stats === 'string') return fail(check, `${path}: ${stats}`);
    const mode = stats.mode & 0o777;
    if ((mode & 0o077) !== 0) return fail(check, `${path} has mode ${octal(mode)}: a secret must be 0600`);
    if (stats.uid !== owner.uid) return fail(check, `${path} is owned by uid ${stats.uid}, not by ${owner.who}`);
    const text = readOptional(path) ?? '';
    if (PEM_KEY_FILES.has(name)) {
      try {
        createPrivateKey(text);
      } catch {
        return fail(check, `${path} is not a PKCS#8 private key`);
      }
    } else if (text.trim() === '') {
      return fail(check, `${path} is empty`);
    }
    return ok(check, `mode ${octal(mode)}${PEM_KEY_FILES.has(name) ? ', key parses' : ''}`);
  });
}

function checkCertificates(inputs: DoctorInputs): DoctorCheck[] {
  const ca = readCertificate(join(inputs.dataDir, CA_CERT_FILE));
  const server = readCertificate(join(inputs.dataDir, SERVER_CERT_FILE));
  const checks = [certificateValidity('ca certificate', ca, inputs.now), certificateValidity('server certificate', server, inputs.now)];
  if (ca instanceof X509Certificate && server instanceof X509Certificate) {
    if (!server.verify(ca.publicKey)) {
      checks.push(fail('server certificate chain', 'server.crt is not signed by ca.crt: agents will refuse the appliance'));
    } else {
      const missing = inputs.sans.filter((name) => (isIP(name) ? server.checkIP(name) : server.checkHost(name)) === undefined);
      checks.push(
        missing.length === 0
          ? ok('server certificate names', server.subjectAltName ?? '')
          : warn('server certificate names', `the configuration names ${missing.join(', ')}, which server.crt lacks: the appliance issues a new one at its next start`),
      );
    }
  }
  return checks;
}

function certificateValidity(check: string, certificate: X509Certificate | string, now: Date): DoctorCheck {
  if (typeof certificate === 'string') return certificate === 'missing' ? warn(check, 'not created yet (the appliance creates it at its first start)') : fail(check, certificate);
  const end = new Date(certificate.validTo);
  const daysLeft = Math.floor((end.getTime() - now.getTime()) / DAY_MS);
  if (daysLeft < 0) return fail(check, `expired on ${end.toISOString()}`);
  if (now.getTime() < new Date(certificate.validFrom).getTime()) return fail(check, `not valid before ${new Date(certificate.validFrom).toISOString()}: is the clock wrong?`);
  if (daysLeft < CERTIFICATE_WARN_DAYS) return warn(check, `expires in ${daysLeft} days, on ${end.toISOString()}`);
  return ok(check, `valid until ${end.toISOString()} (${daysLeft} days)`);
}

function checkDisk(dataDir: string): DoctorCheck {
  let free: number;
  try {
    const stats = statfsSync(dataDir);
    free = stats.bavail * stats.bsize;
  } catch (error) {
    return fail('free disk', `${dataDir}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  const shown = `${(free / 1024 ** 3).toFixed(2)} GiB free on the data directory's volume`;
  if (free < DISK_FAIL_BYTES) return fail('free disk', `${shown}: writes will soon be refused (ERR_STORAGE_FULL)`);
  if (free < DISK_WARN_BYTES) return warn('free disk', shown);
  return ok('free disk', shown);
}

function checkDatabase(dataDir: string): DoctorCheck {
  const path = join(dataDir, DATABASE_FILE);
  const stats = statOrError(path);
  if (stats === 'missing') return warn('database', `${path} does not exist yet (the appliance creates it at its first start)`);
  if (typeof stats === 'string') return fail('database', `${path}: ${stats}`);
  const latest = latestSchemaVersion(MIGRATIONS);
  const found = inspectDatabase(path);
  if (found.problem !== undefined) return fail('database', `${path}: ${found.problem}`);
  if (found.schemaVersion > latest) return fail('database', `schema version ${found.schemaVersion} was written by a newer appliance; this one knows up to ${latest}`);
  if (found.schemaVersion < latest) return warn('database', `integrity ok; schema version ${found.schemaVersion}, migrated to ${latest} at the next start`);
  return ok('database', `integrity ok; schema version ${found.schemaVersion} (this build's)`);
}

/** How long the doctor waits for PostgreSQL to connect and answer (ms): a check, not a service. */
const POSTGRES_CHECK_WAIT_MS = 5_000;

/**
 * The PostgreSQL `database`: reachable with the configured credentials, and its schema version
 * against this build's (read only: schema_version, never migrated here). `display` names it with
 * the password hidden; the failure says what the driver said, mapped like the appliance's own.
 */
async function checkPostgres(url: string, display: string): Promise<DoctorCheck> {
  const bounds = { statementMs: POSTGRES_CHECK_WAIT_MS, lockMs: POSTGRES_CHECK_WAIT_MS, idleInTransactionMs: POSTGRES_CHECK_WAIT_MS };
  const { postgresKysely } = await import('../store/postgres-dialect.ts');
  const database = postgresKysely(url, { poolSize: 1, waitBounds: bounds });
  try {
    const found = await postgresSchemaVersion(database);
    const latest = latestSchemaVersion(POSTGRES_MIGRATIONS);
    if (found === 0) return warn('database', `${display}: reachable; no schema yet (the appliance creates it at its first start)`);
    if (found > latest) return fail('database', `${display}: schema version ${found} was written by a newer appliance; this one knows up to ${latest}`);
    if (found < latest) return warn('database', `${display}: reachable; schema version ${found}, migrated to ${latest} at the next start`);
    return ok('database', `${display}: reachable; schema version ${found} (this build's)`);
  } catch (error) {
    const failure = storageFailure(error);
    return fail('database', `${display}: ${failure?.message ?? (error instanceof Error ? error.message : String(error))}`);
  } finally {
    await database.destroy();
  }
}

function checkClock(inputs: DoctorInputs): DoctorCheck {
  const built = statOrError(inputs.buildFile);
  if (typeof built !== 'string' && inputs.now.getTime() < built.mtime.getTime() - DAY_MS) {
    return fail('clock', `the clock says ${inputs.now.toISOString()}, before this build was made (${built.mtime.toISOString()}): certificates and JWTs will be judged wrongly`);
  }
  return ok('clock', inputs.now.toISOString());
}

function checkPorts(inputs: DoctorInputs, http: PortState, grpc: PortState): DoctorCheck {
  const ports = `${inputs.httpPort} (admin HTTPS) and ${inputs.grpcPort} (agents' gRPC)`;
  const foreign = [http === 'foreign' ? inputs.httpPort : undefined, grpc === 'foreign' ? inputs.grpcPort : undefined].filter((port) => port !== undefined);
  if (foreign.length > 0) return fail('ports', `port ${foreign.join(' and ')} is held by another program (its TLS certificate is not from this appliance's CA)`);
  if (http === 'ours' && grpc === 'ours') return ok('ports', `the appliance listens on ${ports}`);
  if (http === 'free' && grpc === 'free') return inputs.expectRunning ? fail('ports', `nothing listens on ${ports}: the appliance is not running`) : ok('ports', `${ports} are free (the appliance is not running)`);
  return fail('ports', `only one of ${ports} answers: admin ${http}, gRPC ${grpc}`);
}

function checkHealthz(inputs: DoctorInputs, answer: HealthzAnswer | undefined): DoctorCheck {
  if (answer === undefined) return inputs.expectRunning ? fail('healthz', 'the appliance does not answer') : warn('healthz', 'not checked: the appliance is not running');
  if (answer.status === 200) return ok('healthz', `ok, version ${answer.version}`);
  return fail('healthz', `HTTP ${answer.status}${answer.reason ? `: ${answer.reason}` : ''}`);
}

/** Where to reach a listener bound to `listen`: loopback for a wildcard. */
function probeHost(listen: string): string {
  if (listen === '0.0.0.0' || listen === '') return '127.0.0.1';
  if (listen === '::') return '::1';
  return listen;
}

function readCertificate(path: string): X509Certificate | string {
  const stats = statOrError(path);
  if (typeof stats === 'string') return stats;
  try {
    return new X509Certificate(readFileSync(path));
  } catch {
    return `${path} is not a PEM certificate`;
  }
}

function readOptional(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** The file's stats, 'missing', or the reason it cannot be looked at (e.g. EACCES: run as root or the service account). */
function statOrError(path: string): Stats | string {
  try {
    return statSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'missing';
    return code === 'EACCES' ? 'permission denied (run doctor as root or as the service account)' : String(code ?? error);
  }
}

const octal = (mode: number): string => `0${mode.toString(8).padStart(3, '0')}`;
const ok = (name: string, detail: string): DoctorCheck => ({ name, status: 'ok', detail });
const warn = (name: string, detail: string): DoctorCheck => ({ name, status: 'warn', detail });
const fail = (name: string, detail: string): DoctorCheck => ({ name, status: 'fail', detail });
