import type { Logger } from 'pino';
import { releaseExecutableOf } from '../../bundler/lib/targets.ts';
import { isWindowOpen, parseMaintenanceWindow, type MaintenanceWindow } from './maintenance-window.ts';
import { checkAgentText } from '../../common/agent-text.ts';
import { CtOpsError, isErrorCode } from '../../common/errors.ts';
import type { UpdateOffer__Output, UpdateStatus__Output } from '../../common/proto.ts';
import { newId } from '../lib/ids.ts';
import type { Host } from '../model/host.ts';
import type { AgentRelease, ReleaseFile, ReleaseMinimum } from '../model/release.ts';
import { mayReceiveWork } from '../hosts/status.ts';
import type { GroupSelector, HostUpdate, Rollout, RolloutGroup, RolloutState, UpdatePhase } from '../model/rollout.ts';
import type { Stores } from '../store/index.ts';
import { compareVersions, isReleaseVersion } from '../../common/release-version.ts';

/** Where an agent fetches a release's files on the appliance's HTTPS port (appliance/http/agent-downloads.ts). */
export function releaseDownloadPath(version: string): string {
  return `/agent/v1/releases/${version}/`;
}

/** How often each instance runs RolloutService.advance (ms): new groups start, offers reload, within this long. */
export const ROLLOUT_PASS_MS = 30_000;

/** How long after a healthy report the pass runs (ms); see RolloutService.report. */
const ADVANCE_SOON_MS = 1_000;

/** The success threshold of a group given none (issue 12: 95 % updated and healthy, no rollback). */
export const DEFAULT_SUCCESS_PERCENT = 95;

/** A group as an admin asks for it. */
export interface GroupRequest {
  readonly name: string;
  readonly selector: GroupSelector;
  readonly successPercent?: number;
  /** Text of a maintenance window (maintenance-window.ts); none: any time. */
  readonly maintenanceWindow?: string;
}

/** The phases an agent reports (UpdateStatus.phase), by their wire names. */
const REPORTED_PHASES: Readonly<Record<string, UpdatePhase>> = {
  UPDATE_PHASE_DOWNLOADING: 'downloading',
  UPDATE_PHASE_STAGED: 'staged',
  UPDATE_PHASE_INSTALLED: 'installed',
  UPDATE_PHASE_HEALTHY: 'healthy',
  UPDATE_PHASE_ROLLED_BACK: 'rolled_back',
  UPDATE_PHASE_FAILED: 'failed',
};

/** One group's hosts and how far they are, for `releases status` and the pass that starts groups. */
export interface GroupProgress {
  readonly group: RolloutGroup;
  /** Active hosts of this group (a host belongs to the first group whose selector holds it). */
  readonly hosts: number;
  /** Of those, the hosts the threshold counts: the release has their os/arch, no identity conflict, not blocked. */
  readonly eligible: number;
  /** Hosts running the target version or newer and reported healthy there (or enrolled at it). */
  readonly healthy: number;
  readonly rolledBack: number;
  readonly failed: number;
  /** healthy / eligible reached the group's threshold (a group with none eligible is met). */
  readonly met: boolean;
  /** Whether its maintenance window is open now; null for a group without one. */
  readonly windowOpen: boolean | null;
}

export interface HostProgress {
  readonly host: Host;
  /** Position of the host's group; undefined when no group holds it. */
  readonly group: number | undefined;
  readonly update: HostUpdate | undefined;
}

export interface RolloutStatus {
  readonly rollout: Rollout;
  readonly groups: readonly GroupProgress[];
  readonly hosts: readonly HostProgress[];
}

export interface RolloutServiceDeps {
  readonly stores: Stores;
  readonly orgId: string;
  readonly log: Logger;
  /** The port agents fetch releases from (the HTTPS server's); 0 until it listens (no offer is made before). */
  readonly httpsPort: () => number;
  /** Whether this instance holds the release's files (ReleaseService.isHere): it offers only what it can serve. */
  readonly isHere: (release: AgentRelease) => Promise<boolean>;
}

/** A release offers are made of, with the hosts it is not offered to. */
interface OfferedRelease {
  readonly release: AgentRelease;
  /**
   * Hosts this version is not offered to: it rolled back there (blocked until an admin clears it) or
   * the agent refused or could not complete it (failed: it would refuse again).
   */
  readonly excluded: Set<string>;
}

/**
 * What offers are decided from, read from the store and kept in memory: an offer costs no query per
 * heartbeat. The rollout's target (to its started groups), and the organisation's minimum version
 * (to every host below it, whatever the groups).
 */
interface OfferSnapshot {
  /** With each group's maintenance window parsed, by position (undefined: any time). */
  readonly rollout: (OfferedRelease & { readonly rollout: Rollout; readonly windows: ReadonlyArray<StoredWindow> }) | undefined;
  readonly minimum: OfferedRelease | undefined;
}

/**
 * Owns agent self-update rollouts (issue 12): which release each host is offered and when, the
 * staged order of groups (each starting once the previous met its threshold), halt-on-rollback, and
 * the hosts' reported update phases. Offers are answered from an in-memory snapshot refreshed after
 * each change made here and by `advance` (every instance runs it, so changes made on another
 * instance reach this one within a pass).
 */
export class RolloutService {
  readonly #deps: RolloutServiceDeps;
  #snapshot: OfferSnapshot = { rollout: undefined, minimum: undefined };
  /** The offers recorded (phase offered) by this process, as version/host, for the versions offered now. */
  readonly #offered = new Set<string>();
  /** Stored window texts as this process reads them, each parsed (and an unreadable one warned about) once. */
  readonly #windows = new Map<string, StoredWindow>();
  /** Versions this instance found it lacks the files of, each warned about once. */
  readonly #missing = new Set<string>();
  /** The pass scheduled by a report that may complete a group; one at a time. */
  #soon: NodeJS.Timeout | undefined;

  constructor(deps: RolloutServiceDeps) {
    this.#deps = deps;
  }

  /**
   * Starts rolling `version` out to `groups` in order (one group "everyone" holding every host when
   * none is given), replacing the open rollout (it becomes superseded). The first group starts at once.
   * Throws ERR_RELEASE_NOT_FOUND (not imported, or retired), ERR_INVALID_ARGUMENT (no or duplicate
   * group names, a threshold outside 1–100, an empty host list or tag, a maintenance window
   * parseMaintenanceWindow refuses).
   */
  async start(version: string, groups: readonly GroupRequest[], createdBy: string, now: number): Promise<Rollout> {
    const requested = groups.length > 0 ? groups : [{ name: 'everyone', selector: { kind: 'all' } as const }];
    checkGroups(requested);
    const windows = requested.map((group) => (group.maintenanceWindow === undefined ? undefined : parseMaintenanceWindow(group.maintenanceWindow)));
    const rollout = await this.#deps.stores.transact(async (tx) => {
      const release = await tx.releases.get(version);
      if (release === undefined || release.retiredAt !== null) {
        throw new CtOpsError('ERR_RELEASE_NOT_FOUND', `agent release ${version} is ${release ? 'retired' : 'not imported'}; import it (releases import) before rolling it out`, { version });
      }
      const hosts = (await tx.hosts.list(this.#deps.orgId)).filter(mayReceiveWork);
      const empty = requested.find((group) => group.selector.kind !== 'all' && !hosts.some((host) => holds(group.selector, host)));
      // A mistyped tag or host id would make an empty group, met at once: the canary skipped.
      if (empty) throw new CtOpsError('ERR_INVALID_ARGUMENT', `rollout group ${JSON.stringify(empty.name)} holds no active host`, { field: 'groups' });
      const open = await tx.rollouts.open(this.#deps.orgId);
      if (open) await tx.rollouts.setState(open.id, [open.state], 'superseded', now, null);
      const created: Rollout = {
        id: newId('rol'),
        orgId: this.#deps.orgId,
        version,
        state: 'running',
        haltedReason: null,
        createdAt: now,
        createdBy,
        updatedAt: now,
        groups: requested.map((group, position) => ({ position, name: group.name, selector: group.selector, successPercent: group.successPercent ?? DEFAULT_SUCCESS_PERCENT, startedAt: position === 0 ? now : null, maintenanceWindow: windows[position]?.text ?? null })),
      };
      await tx.rollouts.insert(created);
      return created;
    });
    this.#deps.log.info({ rollout_id: rollout.id, version, groups: rollout.groups.map((group) => group.name), created_by: createdBy }, 'rollout started');
    await this.refresh();
    return rollout;
  }

  /**
   * Sets the lowest agent version the organisation accepts (`releases minimum VERSION`): every host
   * below it is offered that release, whatever the rollout's groups and state; undefined clears it.
   * ERR_RELEASE_NOT_FOUND for a version not imported or retired.
   */
  async setMinimum(version: string | undefined, setBy: string, now: number): Promise<ReleaseMinimum | undefined> {
    const minimum = version === undefined ? undefined : { version, setAt: now, setBy };
    await this.#deps.stores.transact(async (tx) => {
      if (version === undefined) return tx.releases.setMinimum(this.#deps.orgId, undefined);
      const release = await tx.releases.get(version);
      if (release === undefined || release.retiredAt !== null) {
        throw new CtOpsError('ERR_RELEASE_NOT_FOUND', `agent release ${version} is ${release ? 'retired' : 'not imported'}; import it (releases import) before making it the minimum`, { version });
      }
      await tx.releases.setMinimum(this.#deps.orgId, minimum);
    });
    this.#deps.log.info({ version: version ?? null, set_by: setBy }, version === undefined ? 'minimum agent version cleared' : 'minimum agent version set');
    await this.refresh();
    return minimum;
  }

  /** The organisation's minimum agent version; undefined when none is set. */
  minimum(): Promise<ReleaseMinimum | undefined> {
    return this.#deps.stores.releases.minimum(this.#deps.orgId);
  }

  /** Pauses the open rollout (running or halted → paused). ERR_ROLLOUT_NOT_FOUND when none is open. */
  pause(now: number): Promise<Rollout> {
    return this.#move(['running', 'halted'], 'paused', now);
  }

  /**
   * Resumes the open rollout (paused or halted → running); the hosts where it rolled back stay out
   * of it, and out of its thresholds, until clearRollbacks. The groups' progress is looked at
   * again a moment later. ERR_ROLLOUT_NOT_FOUND when none is open.
   */
  async resume(now: number): Promise<Rollout> {
    const rollout = await this.#move(['paused', 'halted'], 'running', now);
    this.#advanceSoon();
    return rollout;
  }

  async #move(from: readonly RolloutState[], to: RolloutState, now: number): Promise<Rollout> {
    const open = await this.#deps.stores.rollouts.open(this.#deps.orgId);
    if (open === undefined) throw new CtOpsError('ERR_ROLLOUT_NOT_FOUND', 'no rollout is open (start one with releases rollout VERSION)');
    if (from.includes(open.state) && (await this.#deps.stores.rollouts.setState(open.id, from, to, now, null))) {
      this.#deps.log.info({ rollout_id: open.id, from: open.state, to }, 'rollout state changed');
    }
    await this.refresh();
    return (await this.#deps.stores.rollouts.get(open.id))!;
  }

  /**
   * Lets `version` be offered again where it rolled back or failed: on `hostId`, or on every host.
   * Returns how many hosts were cleared.
   */
  async clearRollbacks(version: string, hostId: string | undefined): Promise<number> {
    const cleared = await this.#deps.stores.transact(async (tx) => {
      const blocks = await tx.hostUpdates.clearBlocks(version, hostId);
      return Math.max(blocks, await tx.hostUpdates.forgetOutcomes(version, hostId));
    });
    if (cleared > 0) this.#deps.log.info({ version, host_id: hostId, cleared }, 'update rollbacks cleared');
    await this.refresh();
    return cleared;
  }

  /** The open rollout (or, when none is, the latest) with each group's and host's progress; undefined when there never was one. */
  async status(now: number): Promise<RolloutStatus | undefined> {
    const rollout = (await this.#deps.stores.rollouts.open(this.#deps.orgId)) ?? (await this.#deps.stores.rollouts.list(this.#deps.orgId, 1))[0];
    if (rollout === undefined) return undefined;
    return this.#progress(rollout, now);
  }

  async #progress(rollout: Rollout, now: number): Promise<RolloutStatus> {
    const hosts = (await this.#deps.stores.hosts.list(this.#deps.orgId)).filter((host) => host.approval === 'active');
    const updates = new Map((await this.#deps.stores.hostUpdates.list(hosts.map((host) => host.id))).map((update) => [update.hostId, update]));
    const progress: HostProgress[] = hosts.map((host) => ({ host, group: groupOf(rollout.groups, host), update: updates.get(host.id) }));
    const release = await this.#deps.stores.releases.get(rollout.version);
    const blocked = new Set(await this.#deps.stores.hostUpdates.blockedHosts(rollout.version));
    const groups = rollout.groups.map((group) => {
      const members = progress.filter((entry) => entry.group === group.position);
      const at = (phase: UpdatePhase) => members.filter((entry) => entry.update?.version === rollout.version && entry.update.phase === phase).length;
      // The threshold is over the hosts the release can reach: its os/arch in the release, no
      // identity conflict (downloads held), not blocked (a rollback an admin resumed past).
      const eligible = members.filter((entry) => release !== undefined && executableFor(release, entry.host) !== undefined && mayReceiveWork(entry.host) && !blocked.has(entry.host.id));
      const healthy = eligible.filter((entry) => isUpdated(entry, rollout.version)).length;
      const met = healthy * 100 >= group.successPercent * eligible.length;
      const windowOpen = openNow(this.#storedWindow(group.maintenanceWindow), now);
      return { group, hosts: members.length, eligible: eligible.length, healthy, rolledBack: at('rolled_back'), failed: at('failed'), met, windowOpen };
    });
    return { rollout, groups, hosts: progress };
  }

  /**
   * The periodic pass (every instance; the group start and completion are conditional updates, so
   * two instances doing it at once change a row once): reloads the offer snapshot, then in a running
   * rollout starts the next group once every started one met its threshold, and completes the
   * rollout when the last did.
   */
  async advance(now: number): Promise<void> {
    const open = await this.#deps.stores.rollouts.open(this.#deps.orgId);
    if (open?.state === 'running') {
      const { groups } = await this.#progress(open, now);
      const pending = groups.find((entry) => entry.group.startedAt === null);
      const started = groups.filter((entry) => entry.group.startedAt !== null);
      if (started.every((entry) => entry.met)) {
        if (pending === undefined) {
          if (await this.#deps.stores.rollouts.setState(open.id, ['running'], 'completed', now, null)) this.#deps.log.info({ rollout_id: open.id, version: open.version }, 'rollout completed');
        } else if (await this.#deps.stores.rollouts.startGroup(open.id, pending.group.position, now)) {
          this.#deps.log.info({ rollout_id: open.id, version: open.version, group: pending.group.name }, 'rollout group started');
        }
      }
    }
    await this.refresh();
  }

  /**
   * Reloads the offer snapshot from the store. The rollout part: the open rollout, or else a
   * completed one (its hosts that were offline or enrolled since are still offered the target); none
   * when the latest rollout was superseded only. The minimum part: the organisation's minimum
   * version. A retired release is offered by neither.
   */
  async refresh(): Promise<void> {
    const { rollouts, releases } = this.#deps.stores;
    const rollout = (await rollouts.open(this.#deps.orgId)) ?? (await rollouts.list(this.#deps.orgId, 1)).find((latest) => latest.state === 'completed');
    const minimum = await releases.minimum(this.#deps.orgId);
    const [target, lowest] = await Promise.all([this.#offeredRelease(rollout?.version), this.#offeredRelease(minimum?.version)]);
    const windows = rollout?.groups.map((group) => this.#storedWindow(group.maintenanceWindow)) ?? [];
    this.#snapshot = { rollout: rollout && target ? { ...target, rollout, windows } : undefined, minimum: lowest };
    // Only the versions offered now need remembering: the set stays within two entries per host.
    const current = new Set([this.#snapshot.rollout?.release.version, lowest?.release.version]);
    for (const key of this.#offered) if (!current.has(key.slice(0, key.indexOf('/')))) this.#offered.delete(key);
  }

  /**
   * A group's stored window as this process reads it. A text it cannot parse (written by an instance
   * whose Node knows other time zones; a downgrade) never stops offers to other groups nor the
   * appliance's start: that group's window stays closed, warned about once, until a new rollout.
   */
  #storedWindow(text: string | null): StoredWindow {
    if (text === null) return undefined;
    let window = this.#windows.get(text);
    if (window === undefined) {
      try {
        window = parseMaintenanceWindow(text);
      } catch (error) {
        this.#deps.log.warn({ err: error, maintenance_window: text }, "a rollout group's maintenance window cannot be read here: the group is offered nothing until a new rollout");
        window = 'unreadable';
      }
      this.#windows.set(text, window);
    }
    return window;
  }

  /**
   * `version`'s release and the hosts it is not offered to; undefined for none, a retired release, or
   * one whose files this instance lacks (imported on another instance only: its agents would be
   * refused the download, so they are offered it by the instances that have it, once they stream there).
   */
  async #offeredRelease(version: string | undefined): Promise<OfferedRelease | undefined> {
    const release = version === undefined ? undefined : await this.#deps.stores.releases.get(version);
    if (release === undefined || release.retiredAt !== null) return undefined;
    if (!(await this.#deps.isHere(release))) {
      if (!this.#missing.has(release.version)) this.#deps.log.warn({ version: release.version }, 'agent release not offered from this instance: its files are not here (import it on this instance too)');
      this.#missing.add(release.version);
      return undefined;
    }
    this.#missing.delete(release.version);
    const { hostUpdates } = this.#deps.stores;
    return { release, excluded: new Set([...(await hostUpdates.blockedHosts(release.version)), ...(await hostUpdates.hostsIn(release.version, ['failed']))]) };
  }

  /**
   * The offer for `host` running `agentVersion` at `now` (ms since the epoch), from the snapshot: the
   * rollout's target while a running (or completed) rollout's started group holds the host and the
   * group's maintenance window, if it has one, is open; else the minimum version when the host runs
   * below it (a minimum is a floor the site set: no window holds it back). Either only below its
   * version, when the release has the host's os/arch and the version did not roll back or fail
   * there; undefined otherwise. An update offered inside a window runs to its end after the window
   * closes (the agent does not learn the window). No query: called for every ack.
   */
  offerFor(host: Host, agentVersion: string, now: number): UpdateOffer__Output | undefined {
    const httpsPort = this.#deps.httpsPort();
    if (httpsPort === 0 || !isReleaseVersion(agentVersion)) return undefined;
    const { rollout, minimum } = this.#snapshot;
    const offering = rollout !== undefined && (rollout.rollout.state === 'running' || rollout.rollout.state === 'completed');
    const position = offering ? groupOf(rollout.rollout.groups, host) : undefined;
    const window = position === undefined ? undefined : rollout!.windows[position];
    const inOpenGroup = position !== undefined && rollout!.rollout.groups[position]!.startedAt !== null && openNow(window, now) !== false;
    return (inOpenGroup ? offerOf(rollout!, host, agentVersion, httpsPort) : undefined) ?? (minimum && offerOf(minimum, host, agentVersion, httpsPort));
  }


  /**
   * Records that `hostId` was offered `version`, once per host, version and process (phase offered,
   * unless the host already reported on that version). After the ack, never in its way.
   */
  async offered(hostId: string, version: string, now: number): Promise<void> {
    const key = `${version}/${hostId}`;
    if (this.#offered.has(key)) return;
    this.#offered.add(key);
    const rollout = this.#snapshot.rollout?.rollout;
    // A minimum-version offer belongs to no rollout.
    const rolloutId = rollout?.version === version ? rollout.id : null;
    await this.#deps.stores.transact(async (tx) => {
      const known = await tx.hostUpdates.get(hostId);
      if (known?.version === version) return;
      await tx.hostUpdates.record({ hostId, version, phase: 'offered', errorCode: null, detail: null, rolloutId, updatedAt: now });
    });
  }


  /**
   * Records an agent's UpdateStatus (the heartbeat handler, before its ack: an ack means stored). A
   * rollback blocks the version on the host and halts the open rollout of that version
   * (halt-on-error) until an admin resumes it. Throws ERR_INVALID_ARGUMENT for a report that is not
   * a MAJOR.MINOR.PATCH version, a known phase, a catalogue code (or none) and at most 1 KiB of
   * agent text.
   */
  async report(hostId: string, status: UpdateStatus__Output, now: number): Promise<void> {
    const phase = REPORTED_PHASES[status.phase];
    if (!isReleaseVersion(status.version)) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'UpdateStatus.version must be MAJOR.MINOR.PATCH', { field: 'update_status.version' });
    if (phase === undefined) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'UpdateStatus.phase is not a known phase', { field: 'update_status.phase' });
    if (status.error_code !== '' && !isErrorCode(status.error_code)) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'UpdateStatus.error_code is not a catalogue code', { field: 'update_status.error_code' });
    checkAgentText(status.message, 'UpdateStatus.message', { max: 1024 }, { field: 'update_status.message' });
    const rolledBack = phase === 'rolled_back';
    const halted = await this.#deps.stores.transact(async (tx) => {
      const known = await tx.hostUpdates.get(hostId);
      if (known?.version === status.version && known.phase === phase && known.errorCode === (status.error_code || null)) return undefined;
      const open = await tx.rollouts.open(this.#deps.orgId);
      const rolloutId = open?.version === status.version ? open.id : (known?.version === status.version ? known.rolloutId : null);
      await tx.hostUpdates.record({ hostId, version: status.version, phase, errorCode: status.error_code || null, detail: status.message || null, rolloutId, updatedAt: now });
      if (!rolledBack) return undefined;
      await tx.hostUpdates.block(hostId, status.version, status.error_code || 'rolled back', now);
      if (open?.version !== status.version) return undefined;
      const reason = `host ${hostId} rolled back ${status.version}${status.error_code ? ` (${status.error_code})` : ''}`;
      return (await tx.rollouts.setState(open.id, ['running', 'paused'], 'halted', now, reason)) ? { rolloutId: open.id, reason } : undefined;
    });
    this.#deps.log.info({ host_id: hostId, version: status.version, phase, error_code: status.error_code || undefined }, 'agent update reported');
    if (halted) this.#deps.log.warn({ rollout_id: halted.rolloutId, reason: halted.reason }, 'rollout halted');
    if (rolledBack) await this.refresh();
    else if (phase === 'failed') {
      for (const offered of [this.#snapshot.rollout, this.#snapshot.minimum]) {
        if (offered?.release.version === status.version) offered.excluded.add(hostId);
      }
    }
    if (phase === 'healthy') this.#advanceSoon();
  }

  /** Drops a scheduled pass (the appliance is stopping: its stores close). */
  stop(): void {
    clearTimeout(this.#soon);
    this.#soon = undefined;
  }

  /**
   * Runs the pass ADVANCE_SOON_MS after a host reported healthy, so the next group starts within
   * seconds of the threshold rather than at the next periodic pass; reports arriving meanwhile share
   * that one pass (it reads every host of the organisation).
   */
  #advanceSoon(): void {
    if (this.#soon !== undefined) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.advance(Date.now()).catch((error: unknown) => this.#deps.log.error({ err: error }, 'rollout pass failed'));
    }, ADVANCE_SOON_MS);
    this.#soon.unref();
  }
}

/** The offer of `offered` to `host` running `agentVersion`: when below its version, not excluded, and the release has the host's os/arch. */
function offerOf(offered: OfferedRelease, host: Host, agentVersion: string, httpsPort: number): UpdateOffer__Output | undefined {
  const { version } = offered.release;
  if (compareVersions(agentVersion, version) >= 0 || offered.excluded.has(host.id)) return undefined;
  const file = executableFor(offered.release, host);
  return file && { version, file_name: file.name, size: file.size, sha256: file.sha256, download_path: releaseDownloadPath(version), https_port: httpsPort };
}

/** The release's executable for the host's os/arch, or undefined when it has none. */
function executableFor(release: AgentRelease, host: Host): ReleaseFile | undefined {
  const name = releaseExecutableOf(host);
  return release.files.find((file) => file.name === name);
}

/** A group's window: none, one this process can read, or one it cannot (closed). */
type StoredWindow = MaintenanceWindow | 'unreadable' | undefined;

/** Whether `window` is open at `now`: null without a window, false for one that cannot be read. */
function openNow(window: StoredWindow, now: number): boolean | null {
  if (window === undefined) return null;
  return window !== 'unreadable' && isWindowOpen(window, now);
}

/** The position of the first group whose selector holds `host`, or undefined. */
function groupOf(groups: readonly RolloutGroup[], host: Host): number | undefined {
  return groups.find((group) => holds(group.selector, host))?.position;
}

function holds(selector: GroupSelector, host: Host): boolean {
  switch (selector.kind) {
    case 'all':
      return true;
    case 'tag':
      return host.tags[selector.key] === selector.value;
    case 'hosts':
      return selector.hostIds.includes(host.id);
  }
}

/** Updated and healthy on `version`: reported healthy on it (or a newer one), or running it already with nothing pending. */
function isUpdated(entry: HostProgress, version: string): boolean {
  const running = entry.host.agentVersion;
  if (!isReleaseVersion(running) || compareVersions(running, version) < 0) return false;
  const update = entry.update;
  return update === undefined || update.version !== version || update.phase === 'healthy';
}

function checkGroups(groups: readonly GroupRequest[]): void {
  const names = new Set<string>();
  for (const group of groups) {
    const invalid = (why: string): never => {
      throw new CtOpsError('ERR_INVALID_ARGUMENT', `rollout group ${JSON.stringify(group.name)}: ${why}`, { field: 'groups' });
    };
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(group.name)) invalid('a name is 1–64 letters, digits, ".", "_" or "-"');
    if (names.has(group.name)) invalid('named twice');
    names.add(group.name);
    const percent = group.successPercent ?? DEFAULT_SUCCESS_PERCENT;
    if (!Number.isInteger(percent) || percent < 1 || percent > 100) invalid('the success threshold is a percentage from 1 to 100');
    if (group.selector.kind === 'hosts' && group.selector.hostIds.length === 0) invalid('a host list names at least one host');
    if (group.selector.kind === 'tag' && group.selector.key === '') invalid('a tag selector names a tag');
  }
}
