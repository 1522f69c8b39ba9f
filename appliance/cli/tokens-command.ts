import { Command, Option } from 'commander';
import { parseDuration, splitPair } from '../../common/config-values.ts';
import { CtOpsError } from '../../common/errors.ts';
import { AdminClient } from './admin-client.ts';
import { printLine, printObject, printRows } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

const TOKEN_COLUMNS = ['id', 'label', 'state', 'uses', 'max_uses', 'auto_approve', 'expires_at', 'tags'];

interface CreateOptions extends CommonOptions {
  label: string;
  expires: string;
  maxUses: string;
  autoApprove: boolean;
  tag: string[];
}

export function tokensCommand(): Command {
  const tokens = new Command('tokens').description('manage enrolment tokens');
  tokens
    .command('create')
    .description('create an enrolment token; its secret is printed once')
    .option('--label <label>', 'a label for people', '')
    .option('--expires <duration>', 'lifetime such as 12h or 7d', '7d')
    .option('--max-uses <n>', 'how many hosts may enrol with it', '1')
    .option('--auto-approve', 'hosts enrolled with it are active at once', false)
    .addOption(new Option('--tag <key:value>', 'a tag given to hosts enrolled with it (repeatable)').argParser((value: string, previous: string[] = []) => [...previous, value]).default([]))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CreateOptions) => {
      const maxUses = Number(options.maxUses);
      if (!Number.isInteger(maxUses) || maxUses < 1) throw new CtOpsError('ERR_USAGE', `--max-uses: expected a positive integer, got ${JSON.stringify(options.maxUses)}`);
      const body = {
        label: options.label,
        expires_in_secs: Math.floor(parseDuration(options.expires, '--expires') / 1000),
        max_uses: maxUses,
        auto_approve: options.autoApprove,
        tags: Object.fromEntries(options.tag.map((pair) => splitPair(pair, '--tag'))),
      };
      const created = await new AdminClient(options.dataDir).call<Record<string, unknown>>('POST', '/api/v1/tokens', body);
      if (options.json) {
        printObject(created, true);
      } else {
        printLine(`token id: ${String(created.id)}`);
        printLine(`expires:  ${String(created.expires_at)}`);
        printLine('secret (shown once; set it as org_token or CT_OPS_ORG_TOKEN):');
        printLine(String(created.token));
      }
    });
  tokens
    .command('list')
    .description('list enrolment tokens (never their secrets)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      printRows(await new AdminClient(options.dataDir).call('GET', '/api/v1/tokens'), TOKEN_COLUMNS, options.json);
    });
  tokens
    .command('revoke')
    .description('revoke an enrolment token; hosts already enrolled with it are not affected')
    .argument('<id>', 'token id (etk_...)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/tokens/${encodeURIComponent(id)}/revoke`), options.json);
    });
  return tokens;
}
