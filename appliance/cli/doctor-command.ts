import { existsSync } from 'node:fs';
import { Command } from 'commander';
import { CtOpsError } from '../../common/errors.ts';
import { escapeForTerminal, terminalJson } from '../../common/agent-text.ts';

interface DoctorOptions {
  config?: string;
  dataDir?: string;
  json?: boolean;
  waitHealthy?: string;
}

/** The configuration image/install.sh writes: the doctor reads it when no other is named. */
const INSTALLED_CONFIG_FILE = '/etc/ct-ops/appliance.toml';

export function doctorCommand(): Command {
  return new Command('doctor')
    .description('check an appliance installation: ports, data directory and key file modes and owners, certificates, free disk, database integrity, clock, /healthz (read-only; exit 69 when a check fails)')
    .option('--config <file>', `appliance TOML file (also CT_OPS_APPLIANCE_CONFIG; default ${INSTALLED_CONFIG_FILE} when it exists)`)
    .option('--data-dir <dir>', 'the data directory to check (default: from the configuration)')
    .option('--json', 'print the checks as JSON')
    .option('--wait-healthy <secs>', 'first wait up to SECS seconds for /healthz to answer 200; the appliance must then be running')
    .action(async (options: DoctorOptions) => {
      const [{ loadApplianceConfig }, { runDoctor, waitHealthy }] = await Promise.all([import('../config/load.ts'), import('../health/doctor.ts')]);
      const waitSecs = options.waitHealthy === undefined ? undefined : Number(options.waitHealthy);
      if (waitSecs !== undefined && !(Number.isInteger(waitSecs) && waitSecs >= 0 && waitSecs <= 3600)) {
        throw new CtOpsError('ERR_USAGE', `--wait-healthy: expected whole seconds from 0 to 3600, got ${JSON.stringify(options.waitHealthy)}`);
      }
      const file = options.config ?? process.env.CT_OPS_APPLIANCE_CONFIG ?? (existsSync(INSTALLED_CONFIG_FILE) ? INSTALLED_CONFIG_FILE : undefined);
      const config = loadApplianceConfig({ file, env: process.env, flags: { data_dir: options.dataDir } });
      if (waitSecs !== undefined) await waitHealthy(config, waitSecs * 1000);
      const checks = await runDoctor({ ...config, now: new Date(), buildFile: process.argv[1] ?? '', expectRunning: waitSecs !== undefined });
      if (options.json) {
        process.stdout.write(terminalJson({ ok: checks.every((check) => check.status !== 'fail'), checks }));
      } else {
        const width = Math.max(...checks.map((check) => check.name.length));
        for (const check of checks) process.stdout.write(`${check.status.padEnd(4)}  ${check.name.padEnd(width)}  ${escapeForTerminal(check.detail)}\n`);
      }
      const failed = checks.filter((check) => check.status === 'fail').map((check) => check.name);
      if (failed.length > 0) throw new CtOpsError('ERR_DOCTOR_FAILED', `${failed.length} check(s) failed: ${failed.join(', ')}`, { failed: failed.join(',') });
    });
}
