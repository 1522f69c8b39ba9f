import { parseCli } from './cli/args.ts';
import { checkAgent } from './cli/check.ts';
import { reportFatal } from './cli/fatal.ts';
import { reportTask } from './cli/report-task.ts';
import { runAgent } from './cli/run.ts';
import { watchUpdate } from './cli/update-watch.ts';
import { createLogger, logLevelFromEnv, type AgentLogger } from './log/logger.ts';

/**
 * ct-ops-agent: `-config <file>` runs the agent; `-check` validates and tests the connection;
 * `report-task` reports a handed-off task's outcome and exits; `update-watch` installs a staged
 * self-update on Windows and watches it.
 */
async function main(): Promise<number> {
  const request = parseCli(process.argv.slice(2), {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  });
  if (request.kind === 'exit') return request.exitCode;
  let log: AgentLogger | undefined;
  try {
    log = createLogger(logLevelFromEnv(process.env));
    if (request.kind === 'report-task') {
      process.stdout.write(`ct-ops-agent: ${await reportTask(request.configFile, request.report, process.env, log)}\n`);
      return 0;
    }
    if (request.kind === 'update-watch') return await watchUpdate(request.configFile, request.detach, process.env, log);
    if (request.options.check) {
      process.stdout.write(`ct-ops-agent: ${await checkAgent(request.options.configFile, process.env, log)}\n`);
      return 0;
    }
    return await runAgent(request.options.configFile, process.env, log);
  } catch (error) {
    return reportFatal(error, log);
  }
}

// Exit explicitly: the gRPC channel and timers would otherwise keep the process alive.
main().then(
  (code) => process.exit(code),
  (error: unknown) => process.exit(reportFatal(error, undefined)),
);
