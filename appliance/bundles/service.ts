/**
 * BundleService: the offline install bundles the running appliance builds (admin API, and
 * `ct-ops-bundle build` while the appliance runs, which calls that API). Each build is the bundler's
 * `buildBundle` with this appliance's stores as token authority, so a new token is made and recorded
 * here (single use, source install-bundle) and an existing one is checked here. Builds run one at a
 * time (each holds an agent executable in memory and compresses it), each into its own
 * DATA_DIR/bundles/<bundle_id>/, staged and renamed so a half-written bundle is never served, and
 * recorded by the build in install_bundles (who built it, when, its token, the fingerprints), which
 * `list` reads with the hosts enrolled from each. A bundle that cannot reach its requester is
 * withdrawn (`withdraw`: its new token revoked, its directory removed, its record marked withdrawn),
 * so no live single-use token is left behind in a zip nobody holds.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { idPattern } from '../../common/ids.ts';
import { buildBundle, withdrawBundleToken, type BuiltBundle, type BundleRequest } from '../../bundler/index.ts';
import { BUNDLE_ZIP_NAME } from '../../bundler/lib/targets.ts';
import type { InstallBundleRecord } from '../model/bundle.ts';
import type { Stores } from '../store/index.ts';

const BUNDLES_DIR = 'bundles';

/** Prefix of a build's staging directory under DATA_DIR/bundles (never served, swept at start). */
const STAGING_PREFIX = '.staging-';

const BUNDLE_ID = idPattern('bnd');

export interface BundleServiceDeps {
  readonly stores: Stores;
  readonly orgId: string;
  readonly dataDir: string;
  readonly log: Logger;
}

export class BundleService {
  readonly #deps: BundleServiceDeps;
  readonly #bundlesDir: string;
  #queue: Promise<unknown>;

  constructor(deps: BundleServiceDeps) {
    this.#deps = deps;
    this.#bundlesDir = join(deps.dataDir, BUNDLES_DIR);
    // A build a crash interrupted left its staging directory; one appliance serves a data directory, so none is in use now.
    this.#queue = this.#sweepStaging().catch((error: unknown) => deps.log.warn({ err: error }, 'cannot remove old bundle staging directories'));
  }

  async #sweepStaging(): Promise<void> {
    const names = await readdir(this.#bundlesDir).catch(() => [] as string[]);
    await Promise.all(names.filter((name) => name.startsWith(STAGING_PREFIX)).map((name) => rm(join(this.#bundlesDir, name), { recursive: true, force: true })));
  }

  /**
   * Builds one bundle after the builds before it; `by` is the admin asking (logged). Throws what
   * buildBundle throws (ERR_BUNDLE_INPUT_*, ERR_ENROLMENT_TOKEN_NOT_FOUND, ERR_BUNDLE_TOKEN_UNUSABLE, …).
   */
  build(request: BundleRequest, options: { readonly agentVersion?: string; readonly by: string }): Promise<BuiltBundle> {
    const work = async (): Promise<BuiltBundle> => {
      // Each bundle gets its own directory: bundles for one target share a file name.
      const staging = join(this.#bundlesDir, `${STAGING_PREFIX}${process.pid}-${Date.now()}`);
      await mkdir(staging, { recursive: true, mode: 0o700 });
      let result: BuiltBundle | undefined;
      try {
        result = await buildBundle(request, {
          dataDir: this.#deps.dataDir,
          outDir: staging,
          // The same overrides as ct-ops-bundle's; unset, buildBundle takes dist/agents and the package root.
          ...(process.env.CT_OPS_BUNDLE_AGENTS_DIR ? { agentsDir: process.env.CT_OPS_BUNDLE_AGENTS_DIR } : {}),
          ...(process.env.CT_OPS_BUNDLE_TEMPLATES_DIR ? { templatesDir: process.env.CT_OPS_BUNDLE_TEMPLATES_DIR } : {}),
          ...(options.agentVersion !== undefined ? { agentVersion: options.agentVersion } : {}),
          tokens: { stores: this.#deps.stores, orgId: this.#deps.orgId },
        });
        const finalDir = join(this.#bundlesDir, result.bundleId);
        await rename(staging, finalDir);
        return { ...result, path: join(finalDir, result.file) };
      } catch (error) {
        // Built and recorded but not kept: the new token it embeds must not stay live, and its record says so.
        if (result !== undefined) {
          await this.#withdrawToken(result.token, 'the bundle could not be kept');
          await this.#deps.stores.installBundles.markWithdrawn(result.bundleId, options.by, Date.now());
        }
        throw error;
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    };
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run.then((built) => {
      this.#deps.log.info(
        { bundle_id: built.bundleId, os: built.target.os, arch: built.target.arch, token_mode: built.token.mode, token_id: built.token.id, by: options.by, size: built.size },
        'install bundle built',
      );
      return built;
    });
  }

  /** The zip of a built bundle (`by` is logged). Throws ERR_BUNDLE_NOT_FOUND, also for a string that is no bundle id. */
  async zip(bundleId: string, by: string): Promise<{ readonly file: string; readonly path: string }> {
    const dir = this.#bundleDir(bundleId);
    const file = (await readdir(dir).catch(() => [] as string[])).find((name) => BUNDLE_ZIP_NAME.test(name));
    if (file === undefined) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `no install bundle ${bundleId}`, { bundle_id: bundleId });
    this.#deps.log.info({ bundle_id: bundleId, by }, 'install bundle downloaded');
    return { file, path: join(dir, file) };
  }

  /**
   * Withdraws a built bundle its requester could not take (a failed download or write): revokes the
   * token made for it (mode new; an existing token serves others and stays), removes its directory
   * and marks its record withdrawn (kept: the list still shows it). Throws ERR_BUNDLE_NOT_FOUND when
   * this organisation has no such bundle on record, or it was withdrawn already (its zip is gone).
   */
  async withdraw(bundleId: string, by: string): Promise<void> {
    const dir = this.#bundleDir(bundleId);
    const record = await this.#deps.stores.installBundles.get(bundleId);
    if (record?.orgId !== this.#deps.orgId) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `no install bundle ${bundleId}`, { bundle_id: bundleId });
    if (record.withdrawnAt !== null) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `install bundle ${bundleId} was withdrawn already`, { bundle_id: bundleId });
    await this.#withdrawToken({ mode: record.tokenMode, id: record.tokenId ?? undefined }, `bundle ${bundleId} withdrawn by ${by}`);
    await this.#deps.stores.installBundles.markWithdrawn(bundleId, by, Date.now());
    await rm(dir, { recursive: true, force: true });
    this.#deps.log.info({ bundle_id: bundleId, token_id: record.tokenId, by }, 'install bundle withdrawn');
  }

  /**
   * A page of the bundles on record, newest first (withdrawn ones included), each with the hosts
   * that claim it (their count, deleted hosts included, and the newest), and how many there are in all.
   */
  async list(page: { readonly limit: number; readonly offset: number }): Promise<{ bundles: InstallBundleRecord[]; total: number }> {
    const { stores, orgId } = this.#deps;
    const { bundles, total } = await stores.installBundles.list(orgId, page.limit, page.offset);
    const hosts = await stores.installBundles.hostsEnrolled(orgId, bundles.map((bundle) => bundle.id));
    return { bundles: bundles.map((bundle) => ({ bundle, hosts: hosts.get(bundle.id) ?? { enrolled: 0, last: undefined } })), total };
  }

  #bundleDir(bundleId: string): string {
    if (!BUNDLE_ID.test(bundleId)) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', 'no install bundle has that id', {});
    return join(this.#bundlesDir, bundleId);
  }

  async #withdrawToken(token: Pick<BuiltBundle['token'], 'mode' | 'id'>, why: string): Promise<void> {
    if (await withdrawBundleToken(token, { stores: this.#deps.stores, orgId: this.#deps.orgId }, Date.now())) this.#deps.log.info({ token_id: token.id, why }, 'enrolment token revoked');
  }
}
