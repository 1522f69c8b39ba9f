import { accessSync, constants, mkdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { decodeConfigText } from '../../common/config-file.ts';
import { parseDuration } from '../../common/config-values.ts';
import { escapeForTerminal, terminalJson } from '../../common/agent-text.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';
import { CtOpsError } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import { hostNameWarning } from '../../common/host-name.ts';
import type { AdminClient } from '../../appliance/cli/admin-client.ts';
import { buildBundle } from '../build/build.ts';
import type { TokenAuthority } from '../build/token.ts';
import { bundleView, type BundleView } from '../build/view.ts';
import { sha256Hex } from '../lib/sha256sums.ts';
import { ARCHITECTURES, BUNDLE_ZIP_NAME, OPERATING_SYSTEMS } from '../lib/targets.ts';
import { TOKEN_ID, parseBundleRequest, tagsFromPairs, type BundleRequest, type BundleRequestInput } from '../lib/validate.ts';
import { reachAppliance } from './appliance-access.ts';
import { terminalProgress } from './progress.ts';

const BUNDLE_ID = idPattern('bnd');

interface BuildOptions {
  dataDir: string;
  os: string;
  arch: string;
  address: string[];
  token: string;
  tokenSecretFile?: string;
  expires?: string;
  tag: string[];
  label: string;
  out: string;
  agentsDir?: string;
  templatesDir?: string;
  agentVersion?: string;
  createdBy?: string;
  json: boolean;
}

const EXIT_CODES = `
Token modes:
  new        (default) a new single-use enrolment token, recorded with source install-bundle
  etk_...    an existing token; the store keeps only hashes, so give its secret with
             --token-secret-file FILE or CT_OPS_ORG_TOKEN; revoked, expired and used-up
             tokens are refused
  none       no org_token in agent.toml; set CT_OPS_ORG_TOKEN on the host instead

How the appliance is reached (token modes new and existing; none needs no appliance):
  running    through its admin API (the endpoint, CA and admin credential in --data-dir):
             the appliance builds the bundle from its own release directory and this
             command downloads it; --agents-dir, --templates-dir, --created-by and
             SOURCE_DATE_EPOCH apply only while it is stopped
  stopped    through the appliance's own stores, never migrating them: after an
             upgrade, start the appliance once first; the data directory is locked
             meanwhile (the appliance does not start; another build waits)

Reproducible builds: with SOURCE_DATE_EPOCH set, created_at and the zip times come from it
and (token none or an existing token) the bundle id is derived from the inputs, so the
same inputs give a byte-identical zip (give --created-by too when the user name differs).

Prints the zip's path (--json: its metadata). Exit codes:
  0   the bundle was written
  64  usage: a missing or malformed flag
  65  a value is invalid (address, tag, label), the agent executable does not match the
      signed release checksums, or the existing token is unusable
  66  an input is missing (executable, checksums, keys, CA, install template) or no such token
  69  the running appliance's admin API cannot be reached, or the download broke off or does
      not have the sha256 the appliance reported (the appliance's build is withdrawn)
  73  the bundle or output directory cannot be written (checked before the appliance builds;
      a later write failure withdraws the appliance's build and revokes its new token)
  75  the stopped appliance's database is of an older version (start the appliance once),
      the appliance cannot reach its storage (ERR_STORAGE_UNAVAILABLE), or another build or a
      restore held the data directory for 5 minutes (ERR_DATA_DIR_LOCKED, naming it)
  77  the admin credential in --data-dir was refused (ERR_ADMIN_UNAUTHENTICATED)
  70  internal error
`;

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function sourceDateEpoch(env: NodeJS.ProcessEnv): number | undefined {
  const text = env.SOURCE_DATE_EPOCH;
  if (text === undefined || text === '') return undefined;
  if (!/^\d{1,12}$/.test(text.trim())) throw new CtOpsError('ERR_USAGE', `SOURCE_DATE_EPOCH: expected seconds since 1970, got ${JSON.stringify(text)}`);
  return Number(text.trim());
}

function usageDuration(text: string): number {
  try {
    return parseDuration(text, '--expires');
  } catch (cause) {
    throw new CtOpsError('ERR_USAGE', (cause as Error).message, {}, { cause });
  }
}

function tokenInput(options: BuildOptions): BundleRequestInput['token'] {
  const mode = options.token;
  if (options.expires !== undefined && mode !== 'new') throw new CtOpsError('ERR_USAGE', '--expires applies to --token new only');
  if (options.tokenSecretFile !== undefined && !TOKEN_ID.test(mode)) throw new CtOpsError('ERR_USAGE', '--token-secret-file applies to --token <etk_...> only');
  if (mode === 'new') return options.expires === undefined ? { mode: 'new' } : { mode: 'new', expiresInMs: usageDuration(options.expires) };
  if (mode === 'none') return { mode: 'none' };
  if (!TOKEN_ID.test(mode)) throw new CtOpsError('ERR_USAGE', `--token: expected new, none or a token id (etk_...), got ${JSON.stringify(mode)}`);
  let secret = process.env.CT_OPS_ORG_TOKEN ?? '';
  if (options.tokenSecretFile !== undefined) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(options.tokenSecretFile);
    } catch (cause) {
      throw new CtOpsError('ERR_BUNDLE_INPUT_MISSING', `cannot read --token-secret-file ${options.tokenSecretFile}`, { path: options.tokenSecretFile }, { cause });
    }
    secret = decodeConfigText(bytes, options.tokenSecretFile, 'ERR_USAGE');
  }
  if (secret.trim() === '') throw new CtOpsError('ERR_USAGE', `--token ${mode}: give its secret with --token-secret-file FILE or CT_OPS_ORG_TOKEN (the appliance stores only its hash)`);
  return { mode: 'existing', id: mode, secret };
}

/** The zip's path on stdout (--json: with its metadata), and what it holds on the terminal. */
function report(path: string, view: BundleView, addressesForPeople: readonly string[], json: boolean): void {
  process.stdout.write(json ? terminalJson({ path, ...view }) : `${escapeForTerminal(path)}\n`);
  const note = terminalProgress('ct-ops-bundle');
  note(`bundle ${view.bundle_id} for ${addressesForPeople.join(', ')}: ${view.size} bytes, sha256 ${view.sha256}`);
  if (view.token.mode !== 'none') note(`it holds the secret of enrolment token ${view.token.id} (expires ${view.token.expires_at}): treat the media as sensitive`);
}

/** The options and environment only a local build honours: a running appliance builds from its own. */
function refuseLocalOnlyOptions(options: BuildOptions, epoch: number | undefined): void {
  const given = [
    options.agentsDir !== undefined ? '--agents-dir (CT_OPS_BUNDLE_AGENTS_DIR)' : undefined,
    options.templatesDir !== undefined ? '--templates-dir (CT_OPS_BUNDLE_TEMPLATES_DIR)' : undefined,
    options.createdBy !== undefined ? '--created-by' : undefined,
    epoch !== undefined ? 'SOURCE_DATE_EPOCH' : undefined,
  ].filter((name) => name !== undefined);
  if (given.length > 0) {
    throw new CtOpsError('ERR_USAGE', `the appliance is running, so it builds the bundle itself (from its own release directory, recording its admin as the creator): ${given.join(', ')} apply only while it is stopped, or with --token none`);
  }
}

/** Creates the output directory and checks it is one this user can write, before anything is built. Throws ERR_DATA_DIR_UNUSABLE. */
function prepareOutDir(outDir: string): void {
  try {
    mkdirSync(outDir, { recursive: true });
    accessSync(outDir, constants.W_OK);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `cannot create or write the output directory ${outDir}`, { path: outDir }, { cause });
  }
}

/**
 * Asks the running appliance to build the bundle (POST /api/v1/bundles: the same build, its token
 * made and recorded by the appliance) and downloads the zip into outDir, owner-only (it may hold a
 * token secret), checked against the sha256 the appliance reported. The output directory is checked
 * first; a build this command then cannot take (download, checksum, write) is withdrawn on the
 * appliance (DELETE /api/v1/bundles/:id: its new token revoked, its zip removed), so no live token
 * is left in a zip nobody holds.
 */
async function buildThroughApi(client: AdminClient, options: BuildOptions, request: BundleRequest, outDir: string): Promise<{ path: string; view: BundleView }> {
  prepareOutDir(outDir);
  const token = request.token;
  const { download, ...view } = await client.call<BundleView & { download: string }>('POST', '/api/v1/bundles', {
    os: request.target.os,
    arch: request.target.arch,
    address: [...request.addresses],
    tags: request.tags,
    label: request.label,
    token: token.mode === 'existing' ? token.id : token.mode,
    ...(token.mode === 'existing' ? { token_secret: token.secret } : {}),
    ...(token.mode === 'new' && token.expiresInMs !== undefined ? { expires_in_secs: Math.round(token.expiresInMs / 1000) } : {}),
    ...(options.agentVersion !== undefined ? { agent_version: options.agentVersion } : {}),
  });
  if (!BUNDLE_ID.test(view.bundle_id)) throw new CtOpsError('ERR_INTERNAL', 'the admin API answered a bundle id of an unknown form');
  try {
    // The file name comes from the server: only a bundle zip name, never a path, is joined to --out.
    if (!BUNDLE_ZIP_NAME.test(view.file)) throw new CtOpsError('ERR_INTERNAL', `the admin API named the bundle file ${JSON.stringify(view.file)}, which is not a bundle zip name`, { bundle_id: view.bundle_id });
    const zip = await client.download(download);
    if (sha256Hex(zip) !== view.sha256) throw new CtOpsError('ERR_APPLIANCE_UNREACHABLE', `the downloaded bundle ${view.bundle_id} does not have the sha256 the appliance reported (a broken transfer)`, { bundle_id: view.bundle_id });
    const path = join(outDir, view.file);
    writeFileAtomic(path, zip, 0o600);
    return { path, view };
  } catch (error) {
    await withdrawBundle(client, view);
    throw error;
  }
}

/** Withdraws a built bundle this command could not take, and says so on stderr (piped too: it explains the failure); when that fails too, what is left to do by hand. */
async function withdrawBundle(client: AdminClient, view: BundleView): Promise<void> {
  const note = (message: string) => process.stderr.write(`ct-ops-bundle: ${escapeForTerminal(message)}\n`);
  try {
    await client.call('DELETE', `/api/v1/bundles/${view.bundle_id}`);
    note(`bundle ${view.bundle_id} withdrawn on the appliance${view.token.mode === 'new' ? ` (its token ${view.token.id} revoked)` : ''}`);
  } catch (error) {
    note(`cannot withdraw bundle ${view.bundle_id} on the appliance (${(error as Error).message})${view.token.mode === 'new' ? `: revoke its token ${view.token.id} (ct-ops-appliance tokens revoke)` : ''}`);
  }
}

/** A build in this process (token none, or a stopped appliance's stores). */
async function buildHere(options: BuildOptions, request: BundleRequest, dataDir: string, epoch: number | undefined, tokens: TokenAuthority | undefined): Promise<{ path: string; view: BundleView }> {
  const built = await buildBundle(request, {
    dataDir,
    outDir: resolve(options.out),
    ...(options.agentsDir !== undefined ? { agentsDir: resolve(options.agentsDir) } : {}),
    ...(options.templatesDir !== undefined ? { templatesDir: resolve(options.templatesDir) } : {}),
    ...(options.agentVersion !== undefined ? { agentVersion: options.agentVersion } : {}),
    ...(epoch !== undefined ? { sourceDateEpoch: epoch } : {}),
    ...(tokens ? { tokens } : {}),
    onProgress: terminalProgress('ct-ops-bundle'),
  });
  return { path: built.path, view: bundleView(built) };
}

export function buildCommand(): Command {
  return new Command('build')
    .description('build a signed offline install bundle (one OS/arch) on the appliance')
    .addOption(new Option('--data-dir <dir>', "the appliance's data directory").env('CT_OPS_APPLIANCE_DATA_DIR').default('./data'))
    .addOption(new Option('--os <os>', 'target operating system').choices(OPERATING_SYSTEMS).makeOptionMandatory())
    .addOption(new Option('--arch <arch>', 'target architecture').choices(ARCHITECTURES).makeOptionMandatory())
    .addOption(
      new Option('--address <host:port>', "the appliance's ingest address as hosts reach it (a Unicode name is written in its IDNA form, xn--...); repeat it for several ingest instances, in the order agents try them")
        .argParser(collect)
        .makeOptionMandatory(),
    )
    .option('--token <mode>', 'new, none, or an existing token id (etk_...)', 'new')
    .option('--token-secret-file <file>', 'file holding the secret of the existing token given to --token')
    .option('--expires <duration>', 'lifetime of a new token, such as 12h or 7d (default 7d)')
    .addOption(new Option('--tag <key:value>', 'a tag for hosts installed from the bundle (repeatable)').argParser(collect).default([]))
    .option('--label <label>', 'a label for people (also the new token\'s label)', '')
    .option('--out <dir>', 'where to write the zip', '.')
    .addOption(new Option('--agents-dir <dir>', 'release executables: <dir>/<version>/ct-ops-agent-<os>-<arch>[.exe] (default dist/agents)').env('CT_OPS_BUNDLE_AGENTS_DIR'))
    .addOption(new Option('--templates-dir <dir>', 'directory holding installers/, systemd/, launchd/, windows/ (default: the package root)').env('CT_OPS_BUNDLE_TEMPLATES_DIR'))
    .option('--agent-version <version>', 'agent version to package (default: the only one built)')
    .option('--created-by <name>', 'recorded in the manifest and token (default: your user name)')
    .option('--json', 'print the bundle metadata as JSON', false)
    .addHelpText('after', EXIT_CODES)
    .action(async (options: BuildOptions) => {
      const epoch = sourceDateEpoch(process.env);
      const request = parseBundleRequest({
        os: options.os,
        arch: options.arch,
        address: options.address,
        tags: tagsFromPairs(options.tag),
        label: options.label,
        token: tokenInput(options),
        createdBy: options.createdBy ?? userInfo().username,
      });
      for (const address of request.ingestAddresses) {
        const readAs = hostNameWarning(address.name, '--address');
        if (readAs !== undefined) process.stderr.write(`ct-ops-bundle: warning: ${escapeForTerminal(readAs)}\n`);
      }
      const dataDir = resolve(options.dataDir);
      const appliance = request.token.mode === 'none' ? undefined : await reachAppliance(dataDir);
      try {
        let result: { path: string; view: BundleView };
        if (appliance?.kind === 'api') {
          refuseLocalOnlyOptions(options, epoch);
          terminalProgress('ct-ops-bundle')('the appliance is running: it builds the bundle (admin API)');
          result = await buildThroughApi(appliance.client, options, request, resolve(options.out));
        } else {
          result = await buildHere(options, request, dataDir, epoch, appliance?.tokens);
        }
        report(result.path, result.view, request.ingestAddresses.map((address) => address.display), options.json);
      } finally {
        if (appliance?.kind === 'stopped') await appliance.close();
      }
    });
}
