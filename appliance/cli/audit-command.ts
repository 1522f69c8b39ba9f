import { Command, Option } from 'commander';
import { AUDIT_OUTCOMES } from '../model/audit.ts';
import { AdminClient } from './admin-client.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';
import { printRows } from './output.ts';

const AUDIT_COLUMNS = ['id', 'at', 'actor', 'actor_kind', 'source', 'action', 'target', 'outcome', 'error_code', 'status'];

interface FilterOptions {
  actor?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
  before?: string;
}

interface ListOptions extends CommonOptions, FilterOptions {
  limit?: string;
}

/** The filter flags both subcommands take; the API checks their values (ERR_INVALID_ARGUMENT, exit 65). */
function withFilters(command: Command): Command {
  return command
    .option('--actor <username>', "only events of this admin (or the username a login tried); '' for the unknown")
    .option('--action <name>', 'only this action, e.g. hosts.approve, auth.login')
    .addOption(new Option('--outcome <outcome>', 'only events with this outcome').choices(AUDIT_OUTCOMES))
    .option('--since <time>', 'only events at or after this ISO 8601 date or time with offset (2025-11-24, 2025-11-24T12:00:00Z)')
    .option('--until <time>', 'only events before this ISO 8601 date or time with offset')
    .option('--before <id>', 'only events older than this id (the cursor a listing names for its next page)')
    .addOption(dataDirOption());
}

function filterQuery(options: FilterOptions & { limit?: string }): URLSearchParams {
  const query = new URLSearchParams();
  for (const name of ['actor', 'action', 'outcome', 'since', 'until', 'before', 'limit'] as const) {
    const value = options[name];
    if (value !== undefined) query.set(name, value);
  }
  return query;
}

const withQuery = (path: string, query: URLSearchParams): string => (query.size > 0 ? `${path}?${query}` : path);

export function auditCommand(): Command {
  const audit = new Command('audit').description('read the audit log: admin actions and security events (who, what, when, from where)');
  withFilters(audit.command('list').description('list audit events, newest first, one page at a time'))
    .option('--limit <n>', 'events in the page, 1 to 500 (default 100)')
    .addOption(jsonOption())
    .action(async (options: ListOptions) => {
      const { value, headers } = await new AdminClient(options.dataDir).callWithHeaders<Record<string, unknown>[]>('GET', withQuery('/api/v1/audit', filterQuery(options)));
      printRows(value, AUDIT_COLUMNS, options.json);
      const next = headers['x-next-cursor'];
      // On stderr, so the page itself (--json) stays one document for scripts.
      if (typeof next === 'string') process.stderr.write(`more: add --before ${next} for the next page\n`);
    });
  withFilters(audit.command('export').description('write every matching audit event as JSON lines to stdout (e.g. > audit.jsonl), newest first')).action(async (options: FilterOptions & { dataDir: string }) => {
    await new AdminClient(options.dataDir).streamTo(withQuery('/api/v1/audit/export', filterQuery(options)), 'application/x-ndjson, application/json', process.stdout);
  });
  return audit;
}
