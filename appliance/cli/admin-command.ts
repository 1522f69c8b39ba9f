import { Command, Option } from 'commander';
import { FIRST_ADMIN_USERNAME } from '../admin/credentials.ts';
import { AdminClient } from './admin-client.ts';
import { printLine, printObject } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

interface ResetOptions extends CommonOptions {
  user: string;
}

export function adminCommand(): Command {
  const admin = new Command('admin').description('manage admin accounts (on the appliance itself: uses the local admin CLI credential)');
  admin
    .command('reset-password')
    .description("give an admin a new random password, printed once; the admin's login sessions end")
    .addOption(new Option('--user <name>', 'the admin to reset').default(FIRST_ADMIN_USERNAME))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: ResetOptions) => {
      const reset = await new AdminClient(options.dataDir).call<Record<string, unknown>>('POST', `/api/v1/admins/${encodeURIComponent(options.user)}/reset-password`);
      if (options.json) {
        printObject(reset, true);
      } else {
        printLine(`new password for ${String(reset.username)} (shown once; store it now; ${String(reset.sessions_ended)} login session(s) ended):`);
        printLine(String(reset.password));
      }
    });
  return admin;
}
