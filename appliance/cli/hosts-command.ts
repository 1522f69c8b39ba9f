import { Command } from 'commander';
import { AdminClient } from './admin-client.ts';
import { printObject, printRows } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

const HOST_COLUMNS = ['id', 'hostname', 'status', 'os', 'arch', 'agent_version', 'last_heartbeat_at', 'fingerprint_conflict_with'];

export function hostsCommand(): Command {
  const hosts = new Command('hosts').description('list and decide on enrolled hosts');
  hosts
    .command('list')
    .description('list hosts with their status (pending, online, offline, never-connected, rejected, revoked)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      const rows = await new AdminClient(options.dataDir).call<Record<string, unknown>[]>('GET', '/api/v1/hosts');
      printRows(rows, HOST_COLUMNS, options.json);
    });
  hosts
    .command('show')
    .description('show one host with its latest vitals')
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
    'reload-config': "tell a connected agent to re-read its configuration file",
  } as const;
  for (const [action, description] of Object.entries(decisions)) {
    hosts
      .command(action)
      .description(description)
      .argument('<id>', 'host id (hst_...)')
      .addOption(dataDirOption())
      .addOption(jsonOption())
      .action(async (id: string, options: CommonOptions) => {
        printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/hosts/${encodeURIComponent(id)}/${action}`), options.json);
      });
  }
  return hosts;
}
