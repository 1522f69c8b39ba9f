import { Command, InvalidArgumentError } from 'commander';

/** The settings `config` prints: what image/install.sh and uninstall.sh need (no secrets are settings). */
const PRINTABLE = { data_dir: 'dataDir', http_port: 'httpPort', grpc_port: 'grpcPort' } as const;
type PrintableName = keyof typeof PRINTABLE;

/**
 * `ct-ops-appliance config --config FILE SETTING`: prints one setting as the appliance resolves it
 * (flag > environment > TOML file > default; data_dir made absolute against the working folder),
 * so the installer scripts never parse TOML themselves (docs/decisions.md, 80).
 * Errors: ERR_CONFIG_INVALID (the file), exit 1 for an unknown SETTING (commander).
 */
export function configCommand(): Command {
  return new Command('config')
    .description(`print one resolved setting of the appliance configuration (${Object.keys(PRINTABLE).join(', ')}); used by install.sh and uninstall.sh`)
    .requiredOption('--config <file>', 'appliance TOML file')
    .argument('<setting>', Object.keys(PRINTABLE).join(' | '), (value: string): PrintableName => {
      if (!Object.hasOwn(PRINTABLE, value)) throw new InvalidArgumentError(`one of ${Object.keys(PRINTABLE).join(', ')}`);
      return value as PrintableName;
    })
    .action(async (setting: PrintableName, options: { config: string }) => {
      const { loadApplianceConfig } = await import('../config/load.ts');
      const config = loadApplianceConfig({ file: options.config, env: process.env, flags: {} });
      process.stdout.write(`${config[PRINTABLE[setting]]}\n`);
    });
}
