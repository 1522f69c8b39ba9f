/**
 * The inventory benches' shared path (bench:inventory, bench:inventory-fleet): hosts written as
 * enrolment leaves them, package lists of dpkg-like lengths, and a host's scan delivered chunk by
 * chunk through InventoryService.acceptChunk, the service call the gRPC handler makes for each chunk.
 */
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { newId, newTimeOrderedId } from '../../../common/ids.ts';
import { InventoryService } from '../../../appliance/inventory/service.ts';
import type { PackageInput } from '../../../appliance/model/inventory.ts';
import { PresenceRegistry } from '../../../appliance/presence/registry.ts';
import type { Stores } from '../../../appliance/store/index.ts';
import { TaskService } from '../../../appliance/tasks/service.ts';
import { onlyInstance } from '../../helpers/single-instance.ts';

/** Packages per chunk, as the agent sends them. */
export const CHUNK = 500;

/** Hosts written per transaction. */
const HOSTS_PER_TRANSACTION = 1000;

/** Packages `offset` … `offset + count - 1` of a realistic-looking list: names and versions of dpkg-like lengths. */
export function packageList(count: number, offset: number): PackageInput[] {
  return Array.from({ length: count }, (_, i) => {
    const n = i + offset;
    return { name: `lib${n.toString(36)}-common-utils${n % 7}`, version: `${1 + (n % 9)}.${n % 31}.${n % 13}-${n % 5}ubuntu1`, source: 'dpkg', architecture: n % 3 === 0 ? 'all' : 'amd64', publisher: 'Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>', installDate: 1_700_000_000 + n };
  });
}

/**
 * The InventoryService the appliance builds, over `stores`. Its TaskService is never started: the
 * benches stream nothing, so its tasks publish to nobody.
 */
export function benchInventoryService(stores: Stores): InventoryService {
  const log = pino({ level: 'silent' });
  const presence = new PresenceRegistry(() => undefined);
  return new InventoryService({ stores, presence, tasks: new TaskService({ stores, presence, log, cluster: onlyInstance(stores, log) }), log });
}

/**
 * Writes `count` approved hosts of the default organisation (made if missing, as `serve` makes it),
 * named bench-0 … bench-{count-1}, with ids as enrolment gives them (time-ordered, decisions.md 156) or,
 * with `idKind` 'random', as it gave them before; returns their ids in that order.
 */
export async function insertBenchHosts(stores: Stores, count: number, idKind: 'time-ordered' | 'random' = 'time-ordered'): Promise<string[]> {
  const org = await stores.organisations.ensureDefault(Date.now());
  const ids: string[] = [];
  for (let first = 0; first < count; first += HOSTS_PER_TRANSACTION) {
    await stores.transact(async (tx) => {
      for (let h = first; h < Math.min(count, first + HOSTS_PER_TRANSACTION); h += 1) {
        const id = idKind === 'random' ? newId('hst') : newTimeOrderedId('hst', Date.now());
        const publicKey = Buffer.alloc(32);
        publicKey.writeUInt32BE(h + 1);
        await tx.hosts.insert({ id, orgId: org.id, publicKey, hostname: `bench-${h}`, machineFingerprint: `fp-${h}`, os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 1 });
        ids.push(id);
      }
    });
  }
  return ids;
}

export interface HostScan {
  packages: number;
  added: number;
  unchanged: number;
  removed: number;
  /** The slowest acceptChunk call, in ms: a last chunk that also ran a name-index batch. */
  maxChunkMs: number;
}

/**
 * Delivers `list` as one scan of the host (`scanId`), CHUNK packages per acceptChunk call, the first
 * opening the stream with no task (an agent's own scan), the last completing it. Returns the last
 * chunk's tally of the scan.
 */
export async function scanHost(inventory: InventoryService, hostId: string, scanId: string, list: readonly PackageInput[]): Promise<HostScan> {
  const scan: HostScan = { packages: 0, added: 0, unchanged: 0, removed: 0, maxChunkMs: 0 };
  for (let index = 0; index * CHUNK < list.length; index += 1) {
    const packages = list.slice(index * CHUNK, (index + 1) * CHUNK);
    const isLast = (index + 1) * CHUNK >= list.length;
    const started = performance.now();
    const result = await inventory.acceptChunk(hostId, { scanId, taskId: '', chunkIndex: index, packages, skipped: [], isLast }, { now: Date.now(), opensStream: index === 0 });
    scan.maxChunkMs = Math.max(scan.maxChunkMs, performance.now() - started);
    scan.packages += packages.length;
    if (isLast) ({ added: scan.added, unchanged: scan.unchanged, removed: scan.removed } = result.scan);
  }
  return scan;
}
