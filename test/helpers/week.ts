import assert from 'node:assert/strict';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { HeartbeatResponse, TaskUpdate__Output } from '../../common/proto.ts';
import { AgentJwtAuthority } from '../../appliance/auth/agent-jwt.ts';
import { RegisterChallenges } from '../../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest } from '../../appliance/enrolment/register-input.ts';
import { EnrolmentService } from '../../appliance/enrolment/service.ts';
import { VitalsWriter } from '../../appliance/heartbeat/vitals-writer.ts';
import { HostService } from '../../appliance/hosts/service.ts';
import { InventoryService } from '../../appliance/inventory/service.ts';
import type { PackageInput } from '../../appliance/model/inventory.ts';
import { ensureJwtSigningKey } from '../../appliance/pki/jwt-signing-key.ts';
import type { LiveSession } from '../../appliance/presence/registry.ts';
import { PresenceService } from '../../appliance/presence/service.ts';
import type { Stores } from '../../appliance/store/index.ts';
import { TaskService } from '../../appliance/tasks/service.ts';
import { decodedRegister, newIdentity, signedRegister } from './ingest-client.ts';
import { singleInstance } from './single-instance.ts';
import { seededRandom } from './spread.ts';

/**
 * Issue 14, "a week compressed": a steady fleet lives seven simulated days against the appliance's
 * real services on a real SQLite file, and the periodic passes serve.ts schedules run at the
 * simulated times their timers would fire. The database's live size and every retention-bound
 * table must stop growing once the retentions have come round (day 4), and nothing may be kept
 * past its retention. The passes run once per simulated step (10 minutes, the agents' heartbeat
 * interval) instead of every 15 or 60 s: a timeout or an expiry is found up to a step late, which
 * moves nothing measured in days; the hourly ones run hourly.
 *
 * Scaled so a week takes well under a minute on two cores: 300 hosts heartbeating every 10 minutes
 * (one vitals sample each), 200 packages per host scanned daily with churn, config reloads queued by
 * an admin (answered, ignored until they time out, or expiring queued on offline hosts), and 6
 * hosts a day deleted (2 of them by a remote uninstall) while 6 new ones enrol. The retentions are
 * shortened so the steady state arrives within the week: vitals 24 h, removed packages (and a
 * deleted host's inventory) 2 days, finished tasks 2 days. WEEK_DAYS=14 runs a longer "week".
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const DAYS = Number(process.env['WEEK_DAYS'] ?? 7);
const INTERVAL_SECS = 600;
const STEP_MS = INTERVAL_SECS * 1000;
const PACKAGES_PER_HOST = 200;
const NAME_POOL = 3_000;
/** Per host and daily scan: versions bumped, names replaced by others. */
const CHURN = { bumped: 4, replaced: 2 };
const DELETED_PER_DAY = 6;
const UNINSTALLED_PER_DAY = 2;
const CONFIG_RELOADS_PER_DAY = 60;
/** A host in this many is offline for a day (its queued tasks expire, no scan is asked of it). */
const OFFLINE_ONE_IN = 20;
const VITALS_RETENTION_MS = 24 * HOUR;
const REMOVED_RETENTION_DAYS = 2;
const TASK_RETENTION_MS = 2 * DAY;
/** serve.ts's hourly timers (nonce, task and deleted-host inventory retention) and the vitals writer's prune. */
const MAINTENANCE_MS = HOUR;
/**
 * From this day on, sizes and counts must hold within TOLERANCE of that day's: the last retention
 * to come round is the removed packages' (rows removed on day 1 are purged by the first scan after
 * day 3), so from day 4 every table holds a steady window.
 */
const WARM_DAY = 4;
/**
 * Day to day the fleet differs only by chance: which hosts are offline, which config reloads go
 * unanswered, where deletions and enrolments fall. That moves a table by a few per cent; ±10 %
 * leaves room for it and for b-tree page fill, while a table that grows with time (by the same
 * amount each day: +75 % from day 4 to day 7 for a table that keeps everything) fails it.
 */
const TOLERANCE = 0.1;

interface SimHost {
  id: string;
  session: LiveSession;
  /** name → version: what its package manager reports. */
  packages: Map<string, number>;
  scans: number;
  online: boolean;
  /** Tasks its agent received and has not reported on yet. */
  inbox: HeartbeatResponse['task'][];
  gone: boolean;
}

export interface Sizes {
  /** SQLite: pages in use, (page_count − freelist_count) × page_size; PostgreSQL: every table's files, indexes and TOAST included, after a VACUUM. */
  liveBytes: number;
  /** Per table, its indexes included, KiB. */
  kib: Record<string, number>;
  /** SQLite only: what those pages hold (row and key bytes, without free space), KiB. */
  payloadKib?: Record<string, number>;
}

interface DayMeasure extends Sizes {
  day: number;
  counts: Record<string, number>;
}

/** The database under the week, and what measures it from the side (the stores have no call for sizes). */
export interface WeekDatabase {
  readonly stores: Stores;
  /** The one number a query answers, as `n`; `?` placeholders. */
  count(sql: string, ...params: unknown[]): Promise<number>;
  sizes(): Promise<Sizes>;
  close(): Promise<void>;
}

const GROWING_TABLES = ['host_vitals', 'software_packages', 'software_scans', 'software_name_index', 'tasks', 'hosts', 'host_streams'] as const;

export const TITLE = 'a week compressed: vitals retention, inventory purge and task expiry keep the database flat under a steady fleet';

export /** The week on `database` with a fleet of `fleetSize`; `dir` holds the JWT key. Closes the database when it ends. */
async function liveWeek(log: Logger, fleetSize: number, dir: string, database: WeekDatabase): Promise<void> {
  const started = Date.now();
  const { stores, count } = database;
  // Seeded: the same week every run.
  const random = seededRandom(14);
  const t0 = Math.floor(Date.now() / HOUR) * HOUR;
  let now = t0;
  const clock = (): number => now;

  // Wired as serve.ts wires them, the clock simulated.
  const org = await stores.organisations.ensureDefault(now);
  const cluster = await singleInstance(stores, log);
  const presence: PresenceService = new PresenceService({ stores, log, cluster, requeueTasks: (hostId) => void tasks.disconnected(hostId) });
  const tasks: TaskService = new TaskService({ stores, presence: presence.registry, log, cluster, now: clock, retentionMs: TASK_RETENTION_MS, onFinished: (tx, task) => hosts.taskFinished(tx, task) });
  const hosts: HostService = new HostService({ stores, presence, tasks, log });
  const inventory = new InventoryService({ stores, presence: presence.registry, tasks, log });
  const vitals = new VitalsWriter(stores, log, VITALS_RETENTION_MS);
  try {
    const jwtKey = await ensureJwtSigningKey(dir);
    const enrolment = new EnrolmentService({ stores, jwt: new AgentJwtAuthority(jwtKey, 3600), challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log });
    await inventory.updateSettings(org.id, { removedRetentionDays: REMOVED_RETENTION_DAYS });
    const token = await enrolment.issueToken(org.id, { label: 'week', expiresInMs: 30 * DAY, maxUses: 100_000, autoApprove: true, tags: {}, createdBy: 'test', source: 'admin', metadata: {} }, now);

    const fleet = new Map<string, SimHost>();
    let enrolled = 0;
    const randomPackage = (): string => `pkg-${Math.floor(random() * NAME_POOL)}`;

    /** A new machine enrols through the real Register path and opens its stream. */
    const enrol = async (): Promise<void> => {
      const identity = newIdentity(`week-${enrolled++}`);
      const answer = await enrolment.register(parseRegisterRequest(decodedRegister(signedRegister(identity, token.secret, {}, now))), now);
      assert.equal(answer.status, 'AGENT_STATUS_ACTIVE');
      const id = answer.agent_id;
      assert.ok(id);
      const packages = new Map<string, number>();
      while (packages.size < PACKAGES_PER_HOST) packages.set(randomPackage(), 1);
      const host: SimHost = {
        id,
        packages,
        scans: 0,
        online: false,
        inbox: [],
        gone: false,
        session: {
          agentId: id,
          send: async (message) => {
            if (message.task) host.inbox.push(message.task);
            return true;
          },
          close: () => {
            host.online = false;
          },
        },
      };
      fleet.set(id, host);
      await connect(host);
    };
    const connect = async (host: SimHost): Promise<void> => {
      host.online = true;
      presence.registry.attach(host.session, INTERVAL_SECS);
      await presence.claimed(host.session);
      await tasks.connected(host.id);
    };
    const disconnect = (host: SimHost): void => {
      host.online = false;
      presence.registry.detach(host.session, 'stream-closed');
    };

    const report = async (host: SimHost, task_id: string, phase: TaskUpdate__Output['phase'], error_code = ''): Promise<void> => {
      const { notStored, effects } = await tasks.report(host.id, [{ task_id, phase, message: '', error_code, result_json: '' }]);
      assert.equal(notStored, undefined);
      for (const effect of effects) await effect();
    };

    /** What the agent does with a task it received: a scan with a day's churn, a reload (or not), an uninstall. */
    const runAgent = async (host: SimHost): Promise<void> => {
      const inbox = host.inbox.splice(0);
      for (const task of inbox) {
        const taskId = task?.task_id;
        if (!task || !taskId || host.gone || !host.online) continue;
        if (task.software_inventory) {
          if (host.scans > 0) churn(host);
          host.scans += 1;
          await report(host, taskId, 'TASK_PHASE_RUNNING');
          const packages: PackageInput[] = [...host.packages].map(([name, version]) => ({ name, version: `1.${version}`, source: 'dpkg', architecture: 'amd64', publisher: 'Debian', installDate: null }));
          const scanId = `scan-${host.id}-${host.scans}`;
          for (let index = 0, start = 0; start < packages.length; index += 1, start += 500) {
            const chunk = { scanId, taskId, chunkIndex: index, isLast: start + 500 >= packages.length, packages: packages.slice(start, start + 500), skipped: [] };
            await inventory.acceptChunk(host.id, chunk, { now, opensStream: index === 0 });
          }
          await report(host, taskId, 'TASK_PHASE_SUCCEEDED');
        } else if (task.config_reload) {
          // One in five agents never answers: the task times out a minute after it was sent.
          if (random() < 0.2) continue;
          await report(host, taskId, 'TASK_PHASE_SUCCEEDED');
        } else if (task.agent_uninstall) {
          await report(host, taskId, 'TASK_PHASE_SUCCEEDED');
          host.gone = true;
          fleet.delete(host.id);
        }
      }
    };
    const churn = (host: SimHost): void => {
      const names = [...host.packages.keys()];
      for (let i = 0; i < CHURN.bumped; i += 1) {
        const name = names[Math.floor(random() * names.length)]!;
        host.packages.set(name, host.packages.get(name)! + 1);
      }
      for (let i = 0; i < CHURN.replaced; i += 1) host.packages.delete(names[Math.floor(random() * names.length)]!);
      while (host.packages.size < PACKAGES_PER_HOST) {
        const name = randomPackage();
        if (!host.packages.has(name)) host.packages.set(name, 1);
      }
    };

    const heartbeats = async (): Promise<void> => {
      for (const host of fleet.values()) {
        if (!host.online) continue;
        presence.registry.heard(host.session, INTERVAL_SECS);
        // What the heartbeat handler queues for each heartbeat (grpc/heartbeat-handler.ts handle).
        vitals.add({
          hostId: host.id, receivedAt: now + Math.floor(random() * 1000), agentTimestamp: now, intervalSecs: INTERVAL_SECS, agentVersion: '0.1.0',
          cpuPercent: random() * 100, memoryPercent: random() * 100, diskPercent: 40 + random() * 10, uptimeSeconds: Math.floor((now - t0) / 1000), clockOffsetMs: 0,
        });
      }
      // The writer's one-second flush, once per round: each host's sample is its own.
      await vitals.flush();
    };

    /** Sends what was queued to the streaming hosts and lets their agents answer. */
    const deliverAndAnswer = async (): Promise<void> => {
      const waiting = (await stores.tasks.hostsWithQueued()).filter((id) => presence.registry.isStreaming(id));
      await Promise.all(waiting.map((id) => tasks.dispatch(id)));
      for (const host of [...fleet.values()]) if (host.inbox.length > 0) await runAgent(host);
    };

    /** The admin's day: config reloads for random hosts, deletions (some by uninstall). */
    const adminAt = async (stepInDay: number, stepsPerDay: number): Promise<void> => {
      const reloadsNow = Math.round(((stepInDay + 1) * CONFIG_RELOADS_PER_DAY) / stepsPerDay) - Math.round((stepInDay * CONFIG_RELOADS_PER_DAY) / stepsPerDay);
      const ids = [...fleet.keys()];
      for (let i = 0; i < reloadsNow; i += 1) {
        await tasks.create(org.id, { type: 'config_reload', hostId: ids[Math.floor(random() * ids.length)]!, by: 'admin' }, now);
      }
      const deletionsNow = Math.round(((stepInDay + 1) * DELETED_PER_DAY) / stepsPerDay) - Math.round((stepInDay * DELETED_PER_DAY) / stepsPerDay);
      for (let i = 0; i < deletionsNow; i += 1) {
        const candidates = [...fleet.values()].filter((host) => host.online && !host.gone);
        const host = candidates[Math.floor(random() * candidates.length)]!;
        const uninstall = random() < UNINSTALLED_PER_DAY / DELETED_PER_DAY;
        await hosts.delete(org.id, host.id, { uninstall }, 'admin', now);
        if (!uninstall) {
          host.gone = true;
          fleet.delete(host.id);
        }
        await enrol();
      }
    };

    /** A new day: a different twentieth of the fleet is offline. */
    const reshuffleOffline = async (): Promise<void> => {
      for (const host of fleet.values()) {
        const offline = random() < 1 / OFFLINE_ONE_IN;
        if (offline && host.online) disconnect(host);
        else if (!offline && !host.online) await connect(host);
      }
    };

    const measures: DayMeasure[] = [];
    const measure = async (day: number): Promise<DayMeasure> => {
      const counts: Record<string, number> = {};
      for (const table of GROWING_TABLES) counts[table] = await count(`SELECT count(*) AS n FROM ${table}`);
      counts['packages_removed'] = await count('SELECT count(*) AS n FROM software_packages WHERE is_removed = 1');
      counts['tasks_unfinished'] = await count("SELECT count(*) AS n FROM tasks WHERE state IN ('queued', 'sent', 'acknowledged', 'running')");
      counts['hosts_deleted'] = await count('SELECT count(*) AS n FROM hosts WHERE deleted_at IS NOT NULL');
      return { day, counts, ...(await database.sizes()) };
    };

    for (let i = 0; i < fleetSize; i += 1) await enrol();
    const stepsPerDay = DAY / STEP_MS;
    let nextMaintenance = t0 + MAINTENANCE_MS;
    for (let day = 1; day <= DAYS; day += 1) {
      await reshuffleOffline();
      for (let step = 0; step < stepsPerDay; step += 1) {
        now += STEP_MS;
        await heartbeats();
        await adminAt(step, stepsPerDay);
        // serve.ts's timers, each at least once in the step: the software sweeper, the quiet-scan pass, the task sweep.
        await inventory.sweep(now);
        await inventory.abandonQuietScans(now);
        await deliverAndAnswer();
        await tasks.sweep();
        if (now >= nextMaintenance) {
          nextMaintenance += MAINTENANCE_MS;
          // serve.ts's hourly passes and the vitals writer's own.
          await stores.registerNonces.prune(now);
          await tasks.prune(now);
          await inventory.purgeDeletedHosts(now);
          await vitals.prune(now);
        }
      }
      measures.push(await measure(day));
    }

    // The per-day tables, for the report: row counts, then KiB per table with its indexes.
    const table = (columns: string[], cells: (m: DayMeasure) => number[]): string => {
      const header = ['day', 'live KiB', ...columns];
      const rows = measures.map((m) => [String(m.day), String(Math.round(m.liveBytes / 1024)), ...cells(m).map(String)]);
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (row: string[]): string => row.map((c, i) => c.padStart(widths[i]!)).join('  ');
      return [line(header), ...rows.map(line)].join('\n');
    };
    const countColumns = Object.keys(measures[0]!.counts);
    const kibColumns = GROWING_TABLES.filter((name) => measures.some((m) => (m.kib[name] ?? 0) > 4));
    console.log(
      `week compressed: ${fleetSize} hosts, ${DAYS} days, ${((Date.now() - started) / 1000).toFixed(1)} s wall\n` +
        `rows:\n${table(countColumns, (m) => countColumns.map((c) => m.counts[c]!))}\n` +
        `KiB of pages, indexes included:\n${table(kibColumns, (m) => kibColumns.map((c) => m.kib[c] ?? 0))}` +
        (measures[0]!.payloadKib ? `\nKiB of payload in them:\n${table(kibColumns, (m) => kibColumns.map((c) => m.payloadKib?.[c] ?? 0))}` : ''),
    );

    // Nothing kept past its retention. The passes run hourly: a row may outlive its retention by an hour.
    const oldestVitals = await count('SELECT coalesce(min(received_at), 0) AS n FROM host_vitals');
    assert.ok(oldestVitals >= now - VITALS_RETENTION_MS - MAINTENANCE_MS, `vitals older than the retention remain (${(now - oldestVitals) / HOUR} h old)`);
    // A live host's removed rows go when its next scan completes (the product's rule): none older
    // than the retention before its last completed scan.
    const staleRemoved = await count(
      `SELECT count(*) AS n FROM software_packages p JOIN hosts h ON h.id = p.host_id JOIN host_last_inventory l ON l.host_id = p.host_id
       WHERE h.deleted_at IS NULL AND p.is_removed = 1 AND p.removed_at < l.last_inventory_at - ?`,
      REMOVED_RETENTION_DAYS * DAY,
    );
    assert.equal(staleRemoved, 0, 'removed packages past their retention are purged');
    const deletedLongAgo = now - REMOVED_RETENTION_DAYS * DAY - MAINTENANCE_MS;
    assert.ok(await count('SELECT count(*) AS n FROM hosts WHERE deleted_at < ?', deletedLongAgo) >= DELETED_PER_DAY * 3, 'hosts were deleted long enough ago');
    assert.equal(await count('SELECT count(*) AS n FROM software_packages p JOIN hosts h ON h.id = p.host_id WHERE h.deleted_at < ?', deletedLongAgo), 0, "a deleted host's packages go after the removed-package retention");
    assert.equal(await count('SELECT count(*) AS n FROM software_scans s JOIN hosts h ON h.id = s.host_id WHERE h.deleted_at < ?', deletedLongAgo), 0, "a deleted host's scan records go with them");
    assert.ok(await count('SELECT count(*) AS n FROM software_packages p JOIN hosts h ON h.id = p.host_id WHERE h.deleted_at >= ?', deletedLongAgo) > 0, 'hosts deleted within the retention keep their inventory');
    assert.equal(
      await count('SELECT count(*) AS n FROM software_name_index i WHERE NOT EXISTS (SELECT 1 FROM software_packages p WHERE p.host_id = i.host_id AND p.name = i.name)'),
      0,
      'no name index entry outlives the last package row of its name and host',
    );
    assert.equal(await count("SELECT count(*) AS n FROM tasks WHERE state = 'queued' AND expires_at < ?", now - STEP_MS), 0, 'queued tasks past their expiry are expired');
    assert.equal(await count("SELECT count(*) AS n FROM tasks WHERE state IN ('sent', 'acknowledged', 'running') AND deadline_at < ?", now - STEP_MS), 0, 'sent tasks past their deadline are timed out');
    assert.equal(await count('SELECT count(*) AS n FROM tasks WHERE finished_at < ?', now - TASK_RETENTION_MS - MAINTENANCE_MS), 0, 'finished tasks past the task retention are deleted');
    for (const [code, what] of [['ERR_TASK_EXPIRED', 'expired queued'], ['ERR_TASK_TIMEOUT', 'timed out unanswered']] as const) {
      assert.ok(await count('SELECT count(*) AS n FROM tasks WHERE error_code = ?', code) > 0, `the retained days hold tasks ${what} (${code})`);
    }
    // Scan records are bound by count, not time: the newest 100 per host (HOST_INVENTORY_LIMITS.scans), one a day here.
    assert.ok(await count('SELECT coalesce(max(n), 0) AS n FROM (SELECT count(*) AS n FROM software_scans GROUP BY host_id) AS per_host') <= DAYS + 1, 'one scan record per host and day');

    // Flat from the warm-up day on: the live size, and each table bound by a retention by rows and by
    // what its pages hold. Scan records (newest 100 per host, one a day here) and host rows (kept to
    // retire their keys: one per enrolment) grow by design within a week; both are small, and inside the live size.
    const warm = measures[WARM_DAY - 1]!;
    for (const m of measures.slice(WARM_DAY)) {
      const within = (what: string, value: number, base: number): void =>
        assert.ok(Math.abs(value - base) <= TOLERANCE * base, `${what} on day ${m.day}: ${value}, day ${WARM_DAY}: ${base} (beyond ±${TOLERANCE * 100} %)`);
      within('live size', m.liveBytes, warm.liveBytes);
      for (const table of ['host_vitals', 'software_packages', 'packages_removed', 'tasks'] as const) within(`${table} rows`, m.counts[table]!, warm.counts[table]!);
      for (const table of ['host_vitals', 'software_packages', 'tasks'] as const) {
        if (m.payloadKib && warm.payloadKib) within(`${table} payload`, m.payloadKib[table]!, warm.payloadKib[table]!);
      }
      // The name index takes new names in batches of 50,000 rows: bounded by the live pairs, not flat day to day.
      assert.ok(m.counts['software_name_index']! <= m.counts['software_packages']!, `name index on day ${m.day} larger than the packages it indexes`);
    }
  } finally {
    // In order: the streams (their deadline timers), the writer, then the database.
    presence.registry.closeAll(new CtOpsError('ERR_INTERNAL', 'test over'));
    await vitals.close();
    await database.close();
  }
}
