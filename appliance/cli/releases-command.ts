import { createReadStream } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { Command, Option } from 'commander';
import { create as createTar } from 'tar';
import { CtOpsError } from '../../common/errors.ts';
import { GZIP_MAGIC } from '../backup/manifest.ts';
import { isReleaseFileName } from '../releases/release-check.ts';
import { AdminClient } from './admin-client.ts';
import { printLine, printObject, printRows } from './output.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';

const RELEASE_COLUMNS = ['version', 'state', 'key_id', 'imported_at', 'imported_by', 'retired_at'];

/** How long an import may stay silent: the appliance answers once it has hashed every file (about 700 MB). */
const IMPORT_TIMEOUT_MS = 10 * 60_000;

interface ImportOptions extends CommonOptions {
  allowOlder: boolean;
}

/**
 * The release at `path` as an upload: a folder (dist/agents/<version>/ as `npm run build:agents`
 * writes it, or the release folder on the media) sent as a tar of its release files; a tarball sent
 * as it is (gzip'd or not). The appliance checks everything; nothing here is trusted.
 */
async function releaseArchive(path: string): Promise<{ contentType: string; body: Readable }> {
  const stats = await stat(path).catch((cause: NodeJS.ErrnoException) => {
    throw new CtOpsError('ERR_USAGE', `cannot read ${path}: ${cause.code === 'ENOENT' ? 'it does not exist' : cause.message}`, { path }, { cause });
  });
  if (stats.isDirectory()) {
    const names = (await readdir(path)).filter(isReleaseFileName).sort();
    if (names.length === 0) throw new CtOpsError('ERR_USAGE', `${path} holds no agent release files (SHA256SUMS, SHA256SUMS.minisig, ct-ops-agent-*)`, { path });
    return { contentType: 'application/x-tar', body: createTar({ cwd: path, portable: true }, names) as unknown as Readable };
  }
  const head = Buffer.alloc(2);
  const file = await open(path, 'r');
  try {
    await file.read(head, 0, 2, 0);
  } finally {
    await file.close();
  }
  return { contentType: head.equals(GZIP_MAGIC) ? 'application/gzip' : 'application/x-tar', body: createReadStream(path) };
}

export function releasesCommand(): Command {
  const releases = new Command('releases').description('import and manage the agent releases offered for self-update');
  releases
    .command('import')
    .description("import an agent release (the output of npm run build:agents: a folder or a tarball of it); it must be signed by the appliance's release key")
    .argument('<path>', 'the release folder (SHA256SUMS, SHA256SUMS.minisig, ct-ops-agent-*) or a .tar / .tar.gz of it')
    .option('--allow-older', 'import a version older than one already imported', false)
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (path: string, options: ImportOptions) => {
      const { contentType, body } = await releaseArchive(path);
      const client = new AdminClient(options.dataDir, { timeoutMs: IMPORT_TIMEOUT_MS });
      const outcome = await client.upload<{ imported: boolean; release: Record<string, unknown> }>(`/api/v1/releases${options.allowOlder ? '?allow_older=true' : ''}`, contentType, body);
      if (options.json) return printObject(outcome, true);
      printLine(`${outcome.imported ? 'imported' : 'already imported (same files)'}: agent release ${String(outcome.release.version)}, signed by release key ${String(outcome.release.key_id)}`);
      for (const file of outcome.release.files as Array<{ name: string; sha256: string; size: number }>) printLine(`  ${file.sha256}  ${file.name} (${file.size} bytes)`);
    });
  releases
    .command('list')
    .description('list the imported agent releases, newest first')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      printRows(await new AdminClient(options.dataDir).call('GET', '/api/v1/releases'), RELEASE_COLUMNS, options.json);
    });
  releases
    .command('show')
    .description('show one imported agent release with its files and their SHA-256')
    .argument('<version>', 'MAJOR.MINOR.PATCH')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (version: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('GET', `/api/v1/releases/${encodeURIComponent(version)}`), options.json);
    });
  releases
    .command('retire')
    .description('retire an agent release: it is no longer offered to agents (its files and record are kept)')
    .argument('<version>', 'MAJOR.MINOR.PATCH')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (version: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/releases/${encodeURIComponent(version)}/retire`), options.json);
    });
  releases
    .command('rollout')
    .description('offer an imported release to the hosts, group by group: each group starts once the previous one is updated and healthy (its threshold) with no rollback; a rollback halts the rollout')
    .argument('<version>', 'MAJOR.MINOR.PATCH (imported, not retired)')
    .addOption(
      new Option('--group <name=selector[@percent]>', 'a group, in order (repeatable; default: one group "everyone"=all): selector all, tag:KEY=VALUE or hosts:ID,ID…; percent the success threshold (default 95)')
        .argParser((value: string, previous: string[] = []) => [...previous, value])
        .default([]),
    )
    .addOption(
      new Option('--window <name=window>', 'the hours group NAME is offered the release (repeatable, one per group; default: any time): "[DAYS ]HH:MM-HH:MM[ TIME-ZONE]", e.g. "Mon-Fri 22:00-06:00 Europe/Berlin"; days name the day a window opens, the zone defaults to UTC')
        .argParser((value: string, previous: string[] = []) => [...previous, value])
        .default([]),
    )
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (version: string, options: CommonOptions & { group: string[]; window: string[] }) => {
      const body = { version, groups: withWindows(options.group.map(parseGroup), options.window) };
      printObject(await new AdminClient(options.dataDir).call('POST', '/api/v1/rollouts', body), options.json);
    });
  releases
    .command('status')
    .description('the open (or latest) rollout: each group\'s progress and each host\'s update phase (offered, downloading, staged, installed, healthy, rolled back with its reason, failed)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => {
      const status = await new AdminClient(options.dataDir).call<{ rollout: Record<string, unknown>; groups: Record<string, unknown>[]; hosts: Record<string, unknown>[] }>('GET', '/api/v1/rollouts/current');
      if (options.json) return printObject(status, true);
      const { rollout } = status;
      printLine(`rollout ${String(rollout.id)}: agent ${String(rollout.version)}, ${String(rollout.state)}${rollout.halted_reason ? ` (${String(rollout.halted_reason)})` : ''}`);
      printRows(status.groups, ['name', 'started_at', 'hosts', 'eligible', 'healthy', 'rolled_back', 'failed', 'met', 'maintenance_window', 'window_open'], false);
      printRows(status.hosts, ['host_id', 'hostname', 'group', 'agent_version', 'phase', 'error_code', 'detail'], false);
    });
  for (const [name, description] of [
    ['pause', 'pause the open rollout: nothing new is offered until resumed'],
    ['resume', 'resume a paused or halted rollout (hosts where the version rolled back stay excluded until clear-rollback)'],
  ] as const) {
    releases
      .command(name)
      .description(description)
      .addOption(dataDirOption())
      .addOption(jsonOption())
      .action(async (options: CommonOptions) => {
        printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/rollouts/current/${name}`), options.json);
      });
  }
  releases
    .command('minimum')
    .description('show, set or clear the lowest agent version accepted: every host below it is offered that release, whatever the rollout')
    .argument('[version]', 'MAJOR.MINOR.PATCH of an imported release (none: show the one set)')
    .option('--clear', 'accept any version again', false)
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (version: string | undefined, options: CommonOptions & { clear: boolean }) => {
      const client = new AdminClient(options.dataDir);
      if (version !== undefined && options.clear) throw new CtOpsError('ERR_USAGE', 'give a version or --clear, not both');
      const minimum = version === undefined && !options.clear ? await client.call<Record<string, unknown>>('GET', '/api/v1/releases/minimum') : await client.call<Record<string, unknown>>('PUT', '/api/v1/releases/minimum', { version: version ?? null });
      printObject(minimum, options.json);
    });
  releases
    .command('clear-rollback')
    .description('let a version that rolled back be offered again: on one host, or on every host')
    .argument('<version>', 'MAJOR.MINOR.PATCH')
    .option('--host <id>', 'only this host (hst_...)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (version: string, options: CommonOptions & { host?: string }) => {
      printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/releases/${encodeURIComponent(version)}/clear-rollbacks`, options.host ? { host_id: options.host } : {}), options.json);
    });
  return releases;
}

/** `groups` with each `NAME=WINDOW` of --window set on the group NAME. Throws ERR_USAGE for a window naming no group, or a group twice. */
function withWindows(groups: Array<Record<string, unknown>>, windows: readonly string[]): Array<Record<string, unknown>> {
  const named = new Map<string, string>();
  for (const text of windows) {
    const [, name, window] = /^([^=]+)=(.+)$/s.exec(text) ?? [];
    if (name === undefined || window === undefined) throw new CtOpsError('ERR_USAGE', `--window ${JSON.stringify(text)}: expected NAME=WINDOW`);
    if (named.has(name)) throw new CtOpsError('ERR_USAGE', `--window: group ${JSON.stringify(name)} is given two windows`);
    // With no --group the one group is "everyone".
    if (!(groups.length === 0 ? name === 'everyone' : groups.some((group) => group.name === name))) throw new CtOpsError('ERR_USAGE', `--window: no group named ${JSON.stringify(name)} (give it with --group)`);
    named.set(name, window);
  }
  if (groups.length === 0 && named.has('everyone')) return [{ name: 'everyone', selector: { kind: 'all' }, maintenance_window: named.get('everyone') }];
  return groups.map((group) => (named.has(group.name as string) ? { ...group, maintenance_window: named.get(group.name as string) } : group));
}

/** A --group value as the API takes it: NAME=all | NAME=tag:KEY=VALUE | NAME=hosts:ID,ID…, each optionally @PERCENT. */
function parseGroup(text: string): Record<string, unknown> {
  const match = /^([^=]+)=(all|tag:([^=]+)=(.*?)|hosts:([^@]+))(?:@(\d{1,3}))?$/.exec(text);
  if (!match) throw new CtOpsError('ERR_USAGE', `--group ${JSON.stringify(text)}: expected NAME=all, NAME=tag:KEY=VALUE or NAME=hosts:ID,ID…, optionally @PERCENT`);
  const [, name, , tagKey, tagValue, hostList, percent] = match;
  const selector = tagKey !== undefined ? { kind: 'tag', key: tagKey, value: tagValue } : hostList !== undefined ? { kind: 'hosts', host_ids: hostList.split(',') } : { kind: 'all' };
  return { name, selector, ...(percent === undefined ? {} : { success_percent: Number(percent) }) };
}
