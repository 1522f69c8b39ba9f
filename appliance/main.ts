import { Command, CommanderError } from 'commander';
import { CtOpsError, ExitCode } from '../common/errors.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { hostsCommand } from './cli/hosts-command.ts';
import { serveCommand } from './cli/serve-command.ts';
import { tokensCommand } from './cli/tokens-command.ts';

const program = new Command('ct-ops-appliance')
  .description('CT-Ops air-gapped fleet-enrolment appliance')
  .version(PRODUCT_VERSION)
  .addCommand(serveCommand())
  .addCommand(hostsCommand())
  .addCommand(tokensCommand());

// Usage errors must leave through reportFailure (exit 64), in subcommands too.
const overrideExits = (command: Command): void => {
  command.exitOverride();
  command.commands.forEach(overrideExits);
};
overrideExits(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  process.exitCode = reportFailure(error);
}

/** One line on stderr naming the error code; the exit code comes from the catalogue. */
function reportFailure(error: unknown): number {
  if (error instanceof CommanderError) {
    return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  }
  if (error instanceof CtOpsError) {
    process.stderr.write(`ct-ops-appliance: ${error.code}: ${error.message}\n`);
    return error.exitCode;
  }
  process.stderr.write(`ct-ops-appliance: ERR_INTERNAL: ${(error as Error)?.stack ?? String(error)}\n`);
  return ExitCode.SOFTWARE;
}
