import { Argument, Command, Option } from 'commander';
import { FIRST_ADMIN_USERNAME } from '../admin/accounts.ts';
import { ADMIN_ROLES } from '../model/admin.ts';
import { AdminClient } from './admin-client.ts';
import { printLine, printObject, printRows } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

interface ResetOptions extends CommonOptions {
  user: string;
}

interface CreateOptions extends CommonOptions {
  role: string;
}

/**
 * `ct-ops-appliance admin create|passwd|disable|list` (issue 13, "Accounts and access"): account
 * management through the admin API with the local admin CLI credential, which alone may create,
 * reset and disable accounts (AdminAccountService). A one-time password is printed once and must be
 * changed at its first login.
 */
export function adminCommand(): Command {
  const admin = new Command('admin').description('manage admin accounts (on the appliance itself: uses the local admin CLI credential)');
  const client = (options: CommonOptions) => new AdminClient(options.dataDir);
  admin
    .command('list')
    .description('list admin accounts: role, disabled, one-time password pending')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      const accounts = await client(options).call<Record<string, unknown>[]>('GET', '/api/v1/admins');
      printRows(accounts, ['username', 'role', 'disabled_at', 'must_change_password', 'created_at'], options.json);
    });
  admin
    .command('create')
    .description('create an admin account with a one-time password, printed once; its first login must change it')
    .addArgument(new Argument('<name>', 'the username: letters, digits, ".", "_", "-"'))
    .addOption(new Option('--role <role>', 'admin may change everything; viewer may only read').choices(ADMIN_ROLES).default('admin'))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (name: string, options: CreateOptions) => {
      const created = await client(options).call<Record<string, unknown>>('POST', '/api/v1/admins', { username: name, role: options.role });
      printOneTimePassword(created, `one-time password for ${name} (${options.role})`, options.json);
    });
  admin
    .command('passwd')
    .alias('reset-password')
    .description("give an admin a new one-time password, printed once; the admin's login sessions end and the next login must change it")
    .addArgument(new Argument('[name]', 'the admin to reset (or --user)'))
    .addOption(new Option('--user <name>', 'the admin to reset').default(FIRST_ADMIN_USERNAME))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (name: string | undefined, options: ResetOptions) => {
      const username = name ?? options.user;
      const reset = await client(options).call<Record<string, unknown>>('POST', `/api/v1/admins/${encodeURIComponent(username)}/reset-password`);
      printOneTimePassword(reset, `new password for ${username} (${String(reset.sessions_ended)} login session(s) ended)`, options.json);
    });
  admin
    .command('disable')
    .description('disable an admin account: it logs in to nothing and its sessions and API tokens end')
    .addArgument(new Argument('<name>', 'the admin to disable'))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (name: string, options: CommonOptions) => {
      const disabled = await client(options).call<Record<string, unknown>>('POST', `/api/v1/admins/${encodeURIComponent(name)}/disable`);
      if (options.json) printObject(disabled, true);
      else printLine(`${name} is disabled (${String(disabled.credentials_ended)} credential(s) ended)`);
    });
  return admin;
}

function printOneTimePassword(answer: Record<string, unknown>, title: string, json: boolean): void {
  if (json) {
    printObject(answer, true);
    return;
  }
  printLine(`${title}; shown once, store it now; it must be changed at the first login:`);
  printLine(String(answer.password));
}
