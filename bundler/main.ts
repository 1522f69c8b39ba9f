/**
 * ct-ops-bundle: builds signed offline install bundles on the appliance and verifies
 * them on a transfer station. A build whose token mode needs the appliance reaches it
 * through its admin API while it runs, through its stores while it is stopped
 * (cli/appliance-access.ts); the native SQLite addon is loaded only then, so verify
 * runs where only the zip and the public key are.
 */
import { Command } from 'commander';
import { runCli } from '../common/cli.ts';
import { PRODUCT_VERSION } from '../common/version.ts';
import { buildCommand } from './cli/build-command.ts';
import { verifyCommand } from './cli/verify-command.ts';

const program = new Command('ct-ops-bundle')
  .description('CT-Ops offline install bundles: build (on the appliance) and verify (anywhere)')
  .version(PRODUCT_VERSION)
  .addCommand(buildCommand())
  .addCommand(verifyCommand());

await runCli(program, process.argv);
