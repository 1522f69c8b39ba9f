/**
 * BundleService: the offline install bundles the running appliance builds (admin API, and
 * `ct-ops-bundle build` while the appliance runs, which calls that API). Each build is the bundler's
 * `buildBundle` with this appliance's stores as token authority, so a new token is made and recorded
 * here (single use, source install-bundle) and an existing one is checked here. Builds run one at a
 * time (each holds an agent executable in memory and compresses it), each into its own
 * DATA_DIR/bundles/<bundle_id>/, staged and renamed so a half-written bundle is never served.
 */
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import { buildBundle, type BuiltBundle, type BundleRequest } from '../../bundler/index.ts';
import { defaultAgentsDir, defaultTemplatesDir } from '../../bundler/lib/paths.ts';
import type { Stores } from '../store/index.ts';

const BUNDLES_DIR = 'bundles';

/** The zip name a bundle directory holds (bundleBaseName + .zip). */
const BUNDLE_ZIP = /^ct-ops-agent-[0-9A-Za-z.+-]+-(?:linux|darwin|windows)-(?:x64|arm64)\.zip$/;

export interface BundleServiceDeps {
  readonly stores: Stores;
  readonly orgId: string;
  readonly dataDir: string;
  readonly log: Logger;
  /** Release executables (default: CT_OPS_BUNDLE_AGENTS_DIR, else dist/agents). */
  readonly agentsDir?: string;
  /** installers/, systemd/, launchd/, windows/ (default: CT_OPS_BUNDLE_TEMPLATES_DIR, else the package root). */
  readonly templatesDir?: string;
}

export class BundleService {
  readonly #deps: BundleServiceDeps;
  readonly #bundlesDir: string;
  readonly #agentsDir: string;
  readonly #templatesDir: string;
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: BundleServiceDeps) {
    this.#deps = deps;
    this.#bundlesDir = join(deps.dataDir, BUNDLES_DIR);
    this.#agentsDir = deps.agentsDir ?? (process.env.CT_OPS_BUNDLE_AGENTS_DIR || defaultAgentsDir());
    this.#templatesDir = deps.templatesDir ?? (process.env.CT_OPS_BUNDLE_TEMPLATES_DIR || defaultTemplatesDir());
  }

  /**
   * Builds one bundle after the builds before it; `by` is the admin asking (logged). Throws what
   * buildBundle throws (ERR_BUNDLE_INPUT_*, ERR_ENROLMENT_TOKEN_NOT_FOUND, ERR_BUNDLE_TOKEN_UNUSABLE, …).
   */
  build(request: BundleRequest, options: { readonly agentVersion?: string; readonly by: string }): Promise<BuiltBundle> {
    const work = async (): Promise<BuiltBundle> => {
      // Each bundle gets its own directory: bundles for one target share a file name.
      const staging = join(this.#bundlesDir, `.staging-${process.pid}-${Date.now()}`);
      await mkdir(staging, { recursive: true, mode: 0o700 });
      try {
        const result = await buildBundle(request, {
          dataDir: this.#deps.dataDir,
          outDir: staging,
          agentsDir: this.#agentsDir,
          templatesDir: this.#templatesDir,
          ...(options.agentVersion !== undefined ? { agentVersion: options.agentVersion } : {}),
          tokens: { stores: this.#deps.stores, orgId: this.#deps.orgId },
        });
        const finalDir = join(this.#bundlesDir, result.bundleId);
        await rename(staging, finalDir);
        return { ...result, path: join(finalDir, result.file) };
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

  /** The zip of a built bundle (`by` is logged). Throws ERR_BUNDLE_NOT_FOUND. */
  async zip(bundleId: string, by: string): Promise<{ readonly file: string; readonly path: string }> {
    const dir = join(this.#bundlesDir, bundleId);
    const file = (await readdir(dir).catch(() => [] as string[])).find((name) => BUNDLE_ZIP.test(name));
    if (file === undefined) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `no install bundle ${bundleId}`, { bundle_id: bundleId });
    this.#deps.log.info({ bundle_id: bundleId, by }, 'install bundle downloaded');
    return { file, path: join(dir, file) };
  }
}
