import { Command } from 'commander';
import { runCli } from '../common/cli.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { adminCommand } from './cli/admin-command.ts';
import { auditCommand } from './cli/audit-command.ts';
import { backupCommand, restoreCommand } from './cli/backup-command.ts';
import { certsCommand } from './cli/certs-command.ts';
import { configCommand } from './cli/config-command.ts';
import { doctorCommand } from './cli/doctor-command.ts';
import { hostsCommand } from './cli/hosts-command.ts';
import { serveCommand } from './cli/serve-command.ts';
import { settingsCommand } from './cli/settings-command.ts';
import { softwareCommand } from './cli/software-command.ts';
import { tasksCommand } from './cli/tasks-command.ts';
import { tokensCommand } from './cli/tokens-command.ts';
import { releasesCommand } from './cli/releases-command.ts';

const program = new Command('ct-ops-appliance')
  .description('CT-Ops air-gapped fleet-enrolment appliance')
  .version(PRODUCT_VERSION)
  .addCommand(serveCommand())
  .addCommand(hostsCommand())
  .addCommand(tokensCommand())
  .addCommand(releasesCommand())
  .addCommand(tasksCommand())
  .addCommand(softwareCommand())
  .addCommand(settingsCommand())
  .addCommand(certsCommand())
  .addCommand(backupCommand())
  .addCommand(restoreCommand())
  .addCommand(doctorCommand())
  .addCommand(adminCommand())
  .addCommand(auditCommand())
  .addCommand(configCommand());

await runCli(program, process.argv);
