import { Command } from 'commander';
import { AdminClient } from './admin-client.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';
import { printRows } from './output.ts';

const SEARCH_COLUMNS = ['hostname', 'host_id', 'version', 'source', 'architecture', 'last_seen'];

interface SearchOptions extends CommonOptions {
  minVersion?: string;
  maxVersion?: string;
  removed: boolean;
}

export function softwareCommand(): Command {
  const software = new Command('software').description("search the fleet's software inventory");
  software
    .command('search')
    .description('list the hosts that have a package (exact name), by version then hostname')
    .argument('<name>', 'the package name, exactly as its package manager reports it')
    .option('--min-version <version>', 'only this version or later (package-version order: epoch, ~, 1.10 > 1.9)')
    .option('--max-version <version>', 'only this version or earlier')
    .option('--removed', 'include hosts where a later scan no longer found the package', false)
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (name: string, options: SearchOptions) => {
      const query = new URLSearchParams({ name });
      if (options.minVersion !== undefined) query.set('min_version', options.minVersion);
      if (options.maxVersion !== undefined) query.set('max_version', options.maxVersion);
      if (options.removed) query.set('include_removed', 'true');
      const rows = await new AdminClient(options.dataDir).call<Record<string, unknown>[]>('GET', `/api/v1/software?${query}`);
      printRows(rows, options.removed ? [...SEARCH_COLUMNS, 'is_removed'] : SEARCH_COLUMNS, options.json);
    });
  return software;
}
