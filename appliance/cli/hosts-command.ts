import { Command, InvalidArgumentError, Option } from 'commander';
import { describeSkipped, type SkippedPackages } from '../../common/inventory-records.ts';
import { AdminClient } from './admin-client.ts';
import { printLine, printObject, printRows } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

const HOST_COLUMNS = ['id', 'hostname', 'status', 'os', 'arch', 'agent_version', 'last_heartbeat_at', 'fingerprint_conflict_with', 'clock_offset_secs', 'clock_offset_warning'];

export function hostsCommand(): Command {
  const hosts = new Command('hosts').description('list and decide on enrolled hosts');
  hosts
    .command('list')
    .description('list hosts with their status (pending, online, offline, never-connected, rejected, revoked, identity-conflict)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      const rows = await new AdminClient(options.dataDir).call<Record<string, unknown>[]>('GET', '/api/v1/hosts');
      printRows(rows, HOST_COLUMNS, options.json);
    });
  hosts
    .command('show')
    .description('show one host with its latest vitals, identity claimants, previous names and recent events')
    .argument('<id>', 'host id (hst_...)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('GET', `/api/v1/hosts/${encodeURIComponent(id)}`), options.json);
    });
  const decisions = {
    approve: 'approve a pending (or rejected) host: its agent becomes active on its next poll',
    reject: 'reject a pending host: its agent stops',
    revoke: 'revoke a host: its live stream is closed at once and its agent stops',
    'reload-config': 'queue a config_reload task: the agent re-reads its configuration file (sent at once if it is online)',
    rescan: 'queue a software_inventory task (sent at once if the agent is online; returns the one already queued, if any)',
  } as const;
  for (const [action, description] of Object.entries(decisions)) {
    const command = hosts
      .command(action)
      .description(description)
      .argument('<id>', 'host id (hst_...)')
      .addOption(dataDirOption())
      .addOption(jsonOption());
    if (action === 'approve') {
      command.option('--replaces <old-id>', 'approve as the replacement of a reimaged host: this host takes over its tags, name history and events; the old host is deleted and its key retired');
      command.option('--force', 'with --replaces: replace the old host even while it is online');
    }
    command.action(async (id: string, options: CommonOptions & { replaces?: string; force?: boolean }) => {
      const client = new AdminClient(options.dataDir);
      const host = encodeURIComponent(id);
      printObject(
        options.replaces === undefined
          ? await client.call('POST', `/api/v1/hosts/${host}/${action}`)
          : await client.call('POST', `/api/v1/hosts/${host}/approve-as-replacement`, { replaces: options.replaces, force: options.force === true }),
        options.json,
      );
    });
  }
  hosts
    .command('resolve')
    .description('resolve an identity conflict (two machines using one host key): keep one claimant (the others are told to enrol anew as pending hosts), or dismiss it as a false alarm')
    .argument('<id>', 'host id (hst_...)')
    .addOption(new Option('--keep <claimant>', "the claimant to keep: its instance id or machine fingerprint (hosts show <id> lists identity_claimants)").conflicts('dismiss'))
    .option('--dismiss', 'a false alarm (or end a resolution early): no machine is retired, the host is judged as any other again')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions & { keep?: string; dismiss?: boolean }, command: Command) => {
      if (options.keep === undefined && !options.dismiss) command.error("error: name the machine to keep (--keep <claimant>) or --dismiss the conflict");
      const path = `/api/v1/hosts/${encodeURIComponent(id)}/${options.dismiss ? 'dismiss-identity-conflict' : 'resolve'}`;
      printObject(await new AdminClient(options.dataDir).call('POST', path, options.dismiss ? {} : { keep: options.keep }), options.json);
    });
  hosts
    .command('delete')
    .description('delete a host: it leaves the list and its key is retired (a later Register with it is refused)')
    .argument('<id>', 'host id (hst_...)')
    .option('--uninstall', 'first have the agent uninstall itself; the host is deleted when the uninstaller reports success (an offline host gets it when it reconnects, within 7 days)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions & { uninstall?: boolean }) => {
      const query = options.uninstall ? '?uninstall=true' : '';
      type Deleted = { host: { id: string; status: string }; uninstall: { id: string; state: string; expires_at: string } | null };
      const outcome = await new AdminClient(options.dataDir).call<Deleted>('DELETE', `/api/v1/hosts/${encodeURIComponent(id)}${query}`);
      if (options.json) return printObject(outcome, true);
      const { host, uninstall } = outcome;
      printLine(
        uninstall
          ? `uninstall task ${uninstall.id} is ${uninstall.state} (the host is ${host.status}; it waits until ${uninstall.expires_at}); ${host.id} is deleted when the agent reports success`
          : `host ${host.id} deleted; its key is retired`,
      );
    });
  addInventoryCommands(hosts);
  return hosts;
}

const PACKAGE_COLUMNS = ['name', 'version', 'source', 'architecture', 'first_seen'];
const REMOVED_PACKAGE_COLUMNS = [...PACKAGE_COLUMNS, 'is_removed', 'removed_at'];
const SCAN_COLUMNS = ['id', 'status', 'started_at', 'completed_at', 'packages_received', 'added', 'removed', 'unchanged', 'skipped', 'error_code'];
/** The admin API's largest page of packages: fewer rows than this means the last page. */
const PACKAGE_PAGE = 5000;

/** `hosts packages` and `hosts scans`: a host's software inventory. */
function addInventoryCommands(hosts: Command): void {
  hosts
    .command('packages')
    .description("list a host's installed packages by name (with --removed, also those a later scan no longer found)")
    .argument('<id>', 'host id (hst_...)')
    .option('--removed', 'include removed packages', false)
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions & { removed: boolean }) => {
      const client = new AdminClient(options.dataDir);
      const rows: Record<string, unknown>[] = [];
      for (;;) {
        const query = new URLSearchParams({ limit: String(PACKAGE_PAGE), offset: String(rows.length), ...(options.removed ? { removed: 'true' } : {}) });
        const page = await client.call<Record<string, unknown>[]>('GET', `/api/v1/hosts/${encodeURIComponent(id)}/packages?${query}`);
        rows.push(...page);
        if (page.length < PACKAGE_PAGE) break;
      }
      printRows(rows, options.removed ? REMOVED_PACKAGE_COLUMNS : PACKAGE_COLUMNS, options.json);
    });
  hosts
    .command('scans')
    .description("list a host's software inventory scans, newest first, with what each added, removed and skipped (packages that could not be stored, by reason)")
    .argument('<id>', 'host id (hst_...)')
    .option('--limit <n>', 'at most this many scans (1-1000)', positiveInteger, 20)
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions & { limit: number }) => {
      const rows = await new AdminClient(options.dataDir).call<Record<string, unknown>[]>('GET', `/api/v1/hosts/${encodeURIComponent(id)}/scans?limit=${options.limit}`);
      const shown = options.json ? rows : rows.map((row) => ({ ...row, skipped: describeSkipped(row.skipped as SkippedPackages[]) || null }));
      printRows(shown, SCAN_COLUMNS, options.json);
    });
}

function positiveInteger(value: string): number {
  if (!/^[1-9][0-9]*$/.test(value)) throw new InvalidArgumentError('expected a whole number from 1');
  return Number(value);
}
