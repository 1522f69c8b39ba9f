import { execFileSync } from 'node:child_process';
import { Command, Option } from 'commander';
import { escapeForTerminal } from '../../common/agent-text.ts';
import { CtOpsError } from '../../common/errors.ts';
import { PASSPHRASE_ENV, readPassphrase } from './passphrase.ts';
import { jsonOption } from './options.ts';
import { printObject } from './output.ts';

interface DataDirOptions {
  config?: string;
  dataDir?: string;
  json: boolean;
}

interface BackupOptions extends DataDirOptions {
  out: string;
  passphraseFile?: string;
  unencrypted: boolean;
}

interface RestoreOptions extends DataDirOptions {
  passphraseFile?: string;
  force: boolean;
  unencrypted: boolean;
  owner?: string;
}

const UNENCRYPTED_WARNING = [
  '',
  '!!! WARNING: this backup is NOT encrypted. !!!',
  'It holds the CA private key, the server key, the JWT signing key, the bundle signing key and the',
  "local admin CLI credential: whoever reads it can impersonate this appliance to every agent and sign",
  'install bundles they trust. It was written with mode 0600; keep it on encrypted media only.',
  '',
].join('\n');

const PLAIN_RESTORE_WARNING = [
  '',
  '!!! WARNING: restoring with --unencrypted. !!!',
  'Nothing authenticates a plain archive: its manifest hashes can be rewritten by whoever changed it.',
  'Restore only a file you wrote yourself and kept on trusted media; a swapped one installs its own CA,',
  'JWT signing key and admin credential. An encrypted backup is authenticated by its passphrase.',
  '',
].join('\n');

const dataDirOptions = (command: Command): Command =>
  command
    .option('--config <file>', 'the appliance TOML file: its data_dir is used (also CT_OPS_APPLIANCE_CONFIG)')
    .option('--data-dir <dir>', "the appliance's data directory (also CT_OPS_APPLIANCE_DATA_DIR; default ./data)")
    .addOption(new Option('--passphrase-file <file>', `read the passphrase from the first line of this file (else ${PASSPHRASE_ENV}, else asked on the terminal)`))
    .addOption(jsonOption());

/**
 * The data directory as `serve` would use it: --data-dir, then the environment, then --config's
 * data_dir, then ./data; and where its database is (the `database` setting, from the same sources).
 */
async function resolveDataDir(options: DataDirOptions): Promise<{ dataDir: string; configFile: string | undefined; database: 'sqlite' | 'postgres' }> {
  const { loadApplianceConfig } = await import('../config/load.ts');
  const configFile = options.config ?? (process.env.CT_OPS_APPLIANCE_CONFIG || undefined);
  const config = loadApplianceConfig({ file: configFile, env: process.env, flags: { data_dir: options.dataDir } });
  return { dataDir: config.dataDir, configFile, database: config.database.kind };
}

export function backupCommand(): Command {
  return dataDirOptions(
    new Command('backup')
      .description('write an encrypted backup of the appliance (database, keys, certificates, config) while it serves; on PostgreSQL the keys and CA every ingest instance shares (no database, no server certificate)')
      .requiredOption('--out <file>', 'the backup file to create (never overwritten; written 0600)'),
  )
    .addOption(new Option('--unencrypted', 'write the archive without encryption (a loud warning; keep it on encrypted media)').default(false).conflicts('passphraseFile'))
    .action(async (options: BackupOptions) => {
      const { dataDir, configFile, database } = await resolveDataDir(options);
      const passphrase = options.unencrypted ? undefined : await readPassphrase({ file: options.passphraseFile, env: process.env, purpose: 'backup' });
      const { createBackup } = await import('../backup/create.ts');
      // Progress only on a terminal (STYLE.md §7); a script's stderr gets the result and errors alone.
      const onStep = process.stderr.isTTY ? (step: string): void => void process.stderr.write(`backup: ${escapeForTerminal(step)}…\n`) : undefined;
      const result = await createBackup({ dataDir, database, configFile, out: options.out, passphrase, onStep });
      if (!result.encrypted) process.stderr.write(`${UNENCRYPTED_WARNING}\n`);
      printObject(
        {
          backup: result.out,
          encrypted: options.json ? result.encrypted : result.encrypted ? 'yes (age, passphrase)' : 'NO',
          bytes: result.bytes,
          database,
          schema_version: result.schemaVersion,
          files: result.members.map((member) => member.name),
          left_out: result.leftOut,
        },
        options.json,
      );
    });
}

export function restoreCommand(): Command {
  return dataDirOptions(
    new Command('restore')
      .description('restore a backup into an absent or empty data directory (stop the appliance first); the next start migrates an older schema. A PostgreSQL appliance\'s backup provisions an ingest instance on that database')
      .argument('<file>', 'the backup file'),
  )
    .addOption(new Option('--force', 'restore into a non-empty data directory, keeping the old one as DATA_DIR.before-restore-<time>').default(false))
    .addOption(new Option('--owner <user>', "as root: the user the restored files belong to (the service user, e.g. ct-ops-appliance); default: the existing data directory's owner"))
    .addOption(new Option('--unencrypted', 'accept a plain (unencrypted, unauthenticated) archive you made yourself with backup --unencrypted').default(false))
    .action(async (file: string, options: RestoreOptions) => {
      const { dataDir, database } = await resolveDataDir(options);
      if (options.unencrypted) process.stderr.write(`${PLAIN_RESTORE_WARNING}\n`);
      const { restoreBackup } = await import('../backup/restore.ts');
      const owner = options.owner === undefined ? undefined : userIds(options.owner);
      const result = await restoreBackup({ file, dataDir, force: options.force, unencrypted: options.unencrypted, owner, passphrase: () => readPassphrase({ file: options.passphraseFile, env: process.env, purpose: 'restore' }) });
      const { manifest } = result;
      const config = manifest.members.find((member) => member.name.startsWith('config/'));
      printObject(
        {
          restored: result.dataDir,
          backup_created_at: manifest.created_at,
          backup_product_version: manifest.product_version,
          database: manifest.database,
          schema_version: manifest.schema_version,
          files: manifest.members.filter((member) => member.name.startsWith('data/')).length,
          kept_aside: result.keptAside,
          ca_fingerprint: result.caFingerprint,
          ca_rotation_phase: result.caRotationPhase,
          config_in_backup: config?.name,
        },
        options.json,
      );
      if (result.caRotationPhase !== 'standby' && !options.json) {
        process.stderr.write(`The backup was taken during a CA rotation (phase ${result.caRotationPhase}): agents that have since moved to the next CA may not trust this restored appliance. See docs/operations.md, Backup and restore.\n`);
      }
      if (manifest.database === 'postgres' && !options.json) {
        process.stderr.write('The backup is of an ingest instance on PostgreSQL: it holds the shared CA and keys, not the database. Start this instance on the same database with its own --san and ports; it issues its own server certificate from the restored CA. See docs/operations.md, Adding an ingest instance.\n');
      }
      // A warning, not a refusal: the unit that starts the appliance may give the database setting where this shell does not.
      if (manifest.database !== database) {
        process.stderr.write(`Warning: the backup is of an appliance on ${manifest.database === 'postgres' ? 'PostgreSQL' : 'SQLite'}, but the settings this command read (--config, CT_OPS_APPLIANCE_DATABASE) ${database === 'postgres' ? 'name a PostgreSQL database: the restored SQLite file will not be served' : 'name no PostgreSQL database: give the appliance the database setting before starting it, or it starts on a new, empty SQLite database'}.\n`);
      }
      if (config !== undefined && !options.json) {
        process.stderr.write(`The backup also holds the appliance config (${escapeForTerminal(config.name)}); it was not applied. Compare it with this machine's config: docs/operations.md, Backup and restore.\n`);
      }
    });
}

/**
 * A user's uid and primary gid by name or number, as id(1) reports them (so NSS users count too).
 * Throws ERR_RESTORE_OWNER_REQUIRED for an unknown user.
 */
function userIds(user: string): { uid: number; gid: number } {
  try {
    const id = (flag: string): number => Number(execFileSync('id', [flag, '--', user], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch (cause) {
    throw new CtOpsError('ERR_RESTORE_OWNER_REQUIRED', `--owner: no such user ${escapeForTerminal(user)}`, {}, { cause });
  }
}
