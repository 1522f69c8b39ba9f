import { CommanderError, type Command } from 'commander';
import { escapeForTerminal } from './agent-text.ts';
import { CtOpsError, ExitCode } from './errors.ts';

/**
 * Runs a commander program the way every CT-Ops CLI exits: usage errors 64 (in
 * subcommands too), a CtOpsError as one stderr line "name: ERR_CODE: message" with
 * the catalogue's exit code, anything else as ERR_INTERNAL with exit 70.
 */
export async function runCli(program: Command, argv: readonly string[]): Promise<void> {
  const overrideExits = (command: Command): void => {
    command.exitOverride();
    command.commands.forEach(overrideExits);
  };
  overrideExits(program);
  try {
    await program.parseAsync([...argv]);
  } catch (error) {
    process.exitCode = reportFailure(program.name(), error);
  }
}

function reportFailure(name: string, error: unknown): number {
  if (error instanceof CommanderError) {
    return error.exitCode === 0 ? ExitCode.OK : ExitCode.USAGE;
  }
  if (error instanceof CtOpsError) {
    // Messages may quote hostile text (a zip entry name, an agent's answer relayed by the API).
    process.stderr.write(`${name}: ${error.code}: ${escapeForTerminal(error.message)}\n`);
    return error.exitCode;
  }
  process.stderr.write(`${name}: ERR_INTERNAL: ${((error as Error)?.stack ?? String(error)).split('\n').map(escapeForTerminal).join('\n')}\n`);
  return ExitCode.SOFTWARE;
}
