/**
 * Admin API for offline install bundles: POST /api/v1/bundles builds one (the same
 * build as `ct-ops-bundle build`) into DATA_DIR/bundles/<bundle_id>/, and
 * GET /api/v1/bundles/:id downloads it. Builds run one at a time: each holds an
 * agent executable in memory and compresses it.
 */
import { createReadStream } from 'node:fs';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { idPatternSource } from '../../common/ids.ts';
import { ARCHITECTURES, OPERATING_SYSTEMS, buildBundle, bundleView, parseBundleRequest, type BundleRequestInput } from '../../bundler/index.ts';
import { defaultAgentsDir, defaultTemplatesDir } from '../../bundler/lib/paths.ts';
import { MAX_LABEL_CHARS, MAX_TAGS, MAX_TAG_VALUE_CHARS, MAX_TOKEN_LIFETIME_MS, MIN_TOKEN_LIFETIME_MS } from '../../bundler/lib/validate.ts';
import type { HttpContext } from './context.ts';

export const BUNDLES_DIR = 'bundles';

/** What the bundle routes need; HttpContext plus the data directory. */
export type BundleRouteContext = Pick<HttpContext, 'stores' | 'orgId' | 'log'> & {
  readonly dataDir: string;
  /** Release executables (default: CT_OPS_BUNDLE_AGENTS_DIR, else dist/agents). */
  readonly agentsDir?: string;
  /** installers/, systemd/, launchd/, windows/ (default: CT_OPS_BUNDLE_TEMPLATES_DIR, else the package root). */
  readonly templatesDir?: string;
};

interface CreateBundleBody {
  os: string;
  arch: string;
  address: string;
  token?: string;
  token_secret?: string;
  expires_in_secs?: number;
  tags?: Record<string, string>;
  label?: string;
  agent_version?: string;
}

const BUNDLE_ID = idPatternSource('bnd');

const tokenSchema = {
  type: 'object',
  required: ['mode'],
  properties: { mode: { type: 'string' }, id: { type: 'string' }, expires_at: { type: 'string' } },
} as const;

const bundleSchema = {
  type: 'object',
  required: ['bundle_id', 'file', 'size', 'sha256', 'created_at', 'os', 'arch', 'agent_version', 'ingest_address', 'token', 'download'],
  properties: {
    bundle_id: { type: 'string' },
    file: { type: 'string' },
    size: { type: 'integer' },
    sha256: { type: 'string' },
    created_at: { type: 'string' },
    os: { type: 'string' },
    arch: { type: 'string' },
    agent_version: { type: 'string' },
    ingest_address: { type: 'string' },
    token: tokenSchema,
    ca_fingerprint_sha256: { type: 'string' },
    bundle_key_id: { type: 'string' },
    release_key_id: { type: 'string' },
    download: { type: 'string' },
  },
} as const;

function tokenInput(body: CreateBundleBody): BundleRequestInput['token'] {
  const mode = body.token ?? 'new';
  if (body.expires_in_secs !== undefined && mode !== 'new') throw new CtOpsError('ERR_INVALID_ARGUMENT', 'expires_in_secs applies to token "new" only', { field: 'expires_in_secs' });
  if (body.token_secret !== undefined && (mode === 'new' || mode === 'none')) throw new CtOpsError('ERR_INVALID_ARGUMENT', 'token_secret applies to an existing token id only', { field: 'token_secret' });
  if (mode === 'new') return body.expires_in_secs === undefined ? { mode: 'new' } : { mode: 'new', expiresInMs: body.expires_in_secs * 1000 };
  if (mode === 'none') return { mode: 'none' };
  if (body.token_secret === undefined) {
    throw new CtOpsError('ERR_INVALID_ARGUMENT', `token ${mode}: give its secret as token_secret (the appliance stores only its hash)`, { field: 'token_secret' });
  }
  return { mode: 'existing', id: mode, secret: body.token_secret };
}

export async function adminBundleRoutes(app: FastifyInstance, ctx: BundleRouteContext): Promise<void> {
  const bundlesDir = join(ctx.dataDir, BUNDLES_DIR);
  const agentsDir = ctx.agentsDir ?? (process.env.CT_OPS_BUNDLE_AGENTS_DIR || defaultAgentsDir());
  const templatesDir = ctx.templatesDir ?? (process.env.CT_OPS_BUNDLE_TEMPLATES_DIR || defaultTemplatesDir());
  let queue: Promise<unknown> = Promise.resolve();
  const oneAtATime = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work, work);
    queue = run.catch(() => undefined);
    return run;
  };

  app.post<{ Body: CreateBundleBody }>('/api/v1/bundles', {
    schema: {
      body: {
        type: 'object',
        required: ['os', 'arch', 'address'],
        additionalProperties: false,
        properties: {
          os: { type: 'string', enum: [...OPERATING_SYSTEMS] },
          arch: { type: 'string', enum: [...ARCHITECTURES] },
          address: { type: 'string', minLength: 3, maxLength: 300 },
          token: { type: 'string', pattern: `^(?:new|none|${idPatternSource('etk').slice(1, -1)})$` },
          token_secret: { type: 'string', maxLength: 128 },
          expires_in_secs: { type: 'integer', minimum: MIN_TOKEN_LIFETIME_MS / 1000, maximum: MAX_TOKEN_LIFETIME_MS / 1000 },
          tags: {
            type: 'object',
            maxProperties: MAX_TAGS,
            propertyNames: { type: 'string', pattern: '^[A-Za-z0-9_.-]{1,64}$' },
            additionalProperties: { type: 'string', maxLength: MAX_TAG_VALUE_CHARS },
          },
          label: { type: 'string', maxLength: MAX_LABEL_CHARS },
          agent_version: { type: 'string', maxLength: 64 },
        },
      },
      response: { 201: bundleSchema },
    },
    handler: async (request, reply) => {
      const body = request.body;
      const bundleRequest = parseBundleRequest({
        os: body.os,
        arch: body.arch,
        address: body.address,
        tags: body.tags ?? {},
        label: body.label ?? '',
        token: tokenInput(body),
        createdBy: request.adminName,
      });
      const built = await oneAtATime(async () => {
        // Each bundle gets its own directory: bundles for one target share a file name.
        const staging = join(bundlesDir, `.staging-${process.pid}-${Date.now()}`);
        await mkdir(staging, { recursive: true, mode: 0o700 });
        try {
          const result = await buildBundle(bundleRequest, {
            dataDir: ctx.dataDir,
            outDir: staging,
            agentsDir,
            templatesDir,
            ...(body.agent_version !== undefined ? { agentVersion: body.agent_version } : {}),
            tokens: { stores: ctx.stores, orgId: ctx.orgId },
          });
          const finalDir = join(bundlesDir, result.bundleId);
          await rename(staging, finalDir);
          return { ...result, path: join(finalDir, result.file) };
        } finally {
          await rm(staging, { recursive: true, force: true });
        }
      });
      ctx.log.info(
        { bundle_id: built.bundleId, os: built.target.os, arch: built.target.arch, token_mode: built.token.mode, token_id: built.token.id, by: request.adminName, size: built.size },
        'install bundle built',
      );
      reply.code(201);
      return { ...bundleView(built), download: `/api/v1/bundles/${built.bundleId}` };
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/bundles/:id', {
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: BUNDLE_ID } } } },
    handler: async (request, reply) => {
      const dir = join(bundlesDir, request.params.id);
      const file = (await readdir(dir).catch(() => [] as string[])).find((name) => /^ct-ops-agent-[0-9A-Za-z.+-]+-(?:linux|darwin|windows)-(?:x64|arm64)\.zip$/.test(name));
      if (file === undefined) throw new CtOpsError('ERR_BUNDLE_NOT_FOUND', `no install bundle ${request.params.id}`, { bundle_id: request.params.id });
      ctx.log.info({ bundle_id: request.params.id, by: request.adminName }, 'install bundle downloaded');
      return reply
        .header('content-type', 'application/zip')
        .header('content-disposition', `attachment; filename="${file}"`)
        .send(createReadStream(join(dir, file)));
    },
  });
}
