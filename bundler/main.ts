/**
 * ct-ops-bundle: builds signed offline install bundles on the appliance and verifies
 * them on a transfer station. The appliance database (native SQLite) is opened only
 * by a build whose token mode needs it, so verify runs where only the zip and the
 * public key are.
 */
import { Command, CommanderError } from 'commander';
import { CtOpsError, ExitCode } from '../common/errors.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { buildCommand } from './cli/build-command.ts';
import { verifyCommand } from './cli/verify-command.ts';

const program = new Command('ct-ops-bundle')
  .description('CT-Ops offline install bundles: build (on the appliance) and verify (anywhere)')
  .version(PRODUCT_VERSION)
  .addCommand(buildCommand())
  .addCommand(verifyCommand());

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
    process.stderr.write(`ct-ops-bundle: ${error.code}: ${error.message}\n`);
    return error.exitCode;
  }
  process.stderr.write(`ct-ops-bundle: ERR_INTERNAL: ${(error as Error)?.stack ?? String(error)}\n`);
  return ExitCode.SOFTWARE;
}
