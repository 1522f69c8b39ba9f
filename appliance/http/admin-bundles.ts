/**
 * Admin API for offline install bundles: POST /api/v1/bundles builds one (the same build as
 * `ct-ops-bundle build`, which calls this route while the appliance runs), GET /api/v1/bundles lists
 * the bundles on record (the chain of custody: who built each, its token, the hosts enrolled from it,
 * the fingerprints to compare at the transfer station), GET /api/v1/bundles/:id downloads one,
 * DELETE /api/v1/bundles/:id withdraws it (its new token revoked; the CLI's way out of a failed
 * download). The workflow is BundleService's (appliance/bundles/service.ts); these routes translate.
 */
import { createReadStream } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { MAX_INGEST_ADDRESSES } from '../../agent/config/address.ts';
import { CtOpsError } from '../../common/errors.ts';
import { idPatternSource } from '../../common/ids.ts';
import { ARCHITECTURES, OPERATING_SYSTEMS, bundleView, parseBundleRequest, type BundleRequestInput } from '../../bundler/index.ts';
import { MAX_LABEL_CHARS, MAX_TAGS, MAX_TAG_VALUE_CHARS, MAX_TOKEN_LIFETIME_MS, MIN_TOKEN_LIFETIME_MS } from '../../bundler/lib/validate.ts';
import type { InstallBundleRecord } from '../model/bundle.ts';
import type { HttpContext } from './context.ts';
import { iso, nullableString, pageLimitSchema, pageOffsetSchema, stringMap } from './views.ts';

interface CreateBundleBody {
  os: string;
  arch: string;
  /** One ingest address, or several (the instances of an appliance on PostgreSQL) in the order agents try them. */
  address: string | string[];
  token?: string;
  token_secret?: string;
  expires_in_secs?: number;
  tags?: Record<string, string>;
  label?: string;
  agent_version?: string;
}

const BUNDLE_ID = idPatternSource('bnd');

const ADDRESS_SCHEMA = { type: 'string', minLength: 3, maxLength: 300 } as const;

const tokenSchema = {
  type: 'object',
  required: ['mode'],
  properties: { mode: { type: 'string' }, id: { type: 'string' }, expires_at: { type: 'string' } },
} as const;

/** What a build answers and the list shows alike, under the same names. */
const builtProperties = {
  bundle_id: { type: 'string' },
  file: { type: 'string' },
  size: { type: 'integer' },
  sha256: { type: 'string' },
  created_at: { type: 'string' },
  os: { type: 'string' },
  arch: { type: 'string' },
  agent_version: { type: 'string' },
  ingest_addresses: { type: 'array', items: { type: 'string' } },
  ca_fingerprint_sha256: { type: 'string' },
  bundle_key_id: { type: 'string' },
} as const;

const bundleSchema = {
  type: 'object',
  required: ['bundle_id', 'file', 'size', 'sha256', 'created_at', 'os', 'arch', 'agent_version', 'ingest_address', 'token', 'download'],
  properties: {
    ...builtProperties,
    ingest_address: { type: 'string' },
    token: tokenSchema,
    release_key_id: { type: 'string' },
    download: { type: 'string' },
  },
} as const;

/** A page of GET /api/v1/bundles when the query names no limit. */
const DEFAULT_BUNDLE_PAGE = 50;

/** A recorded bundle as GET /api/v1/bundles lists it. */
const recordSchema = {
  type: 'object',
  required: ['bundle_id', 'created_at', 'created_by', 'os', 'arch', 'agent_version', 'token', 'file', 'size', 'sha256', 'hosts_enrolled', 'last_host', 'withdrawn_at'],
  properties: {
    ...builtProperties,
    created_by: { type: 'string' },
    tags: stringMap,
    label: { type: 'string' },
    token: { type: 'object', required: ['mode', 'id'], properties: { mode: { type: 'string', enum: ['new', 'existing', 'none'] }, id: nullableString } },
    hosts_enrolled: { type: 'integer' },
    last_host: {
      anyOf: [
        { type: 'object', required: ['id', 'hostname', 'enrolled_at'], properties: { id: { type: 'string' }, hostname: { type: 'string' }, enrolled_at: { type: 'string' } } },
        { type: 'null' },
      ],
    },
    withdrawn_at: nullableString,
    withdrawn_by: nullableString,
  },
} as const;

/** A recorded bundle as the API shows it: field names as in a build's answer (bundleView) where they are the same facts. */
export type BundleRecordView = ReturnType<typeof recordView>;

function recordView({ bundle, hosts }: InstallBundleRecord) {
  return {
    bundle_id: bundle.id,
    created_at: iso(bundle.createdAt),
    created_by: bundle.createdBy,
    os: bundle.os,
    arch: bundle.arch,
    agent_version: bundle.agentVersion,
    ingest_addresses: bundle.addresses,
    tags: bundle.tags,
    label: bundle.label,
    token: { mode: bundle.tokenMode, id: bundle.tokenId },
    file: bundle.zipFile,
    size: bundle.zipSize,
    sha256: bundle.zipSha256,
    bundle_key_id: bundle.bundleKeyId,
    ca_fingerprint_sha256: bundle.caFingerprint,
    hosts_enrolled: hosts.enrolled,
    last_host: hosts.last === undefined ? null : { id: hosts.last.hostId, hostname: hosts.last.hostname, enrolled_at: iso(hosts.last.enrolledAt) },
    withdrawn_at: iso(bundle.withdrawnAt),
    withdrawn_by: bundle.withdrawnBy,
  };
}

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

export async function adminBundleRoutes(app: FastifyInstance, ctx: Pick<HttpContext, 'services'>): Promise<void> {
  app.post<{ Body: CreateBundleBody }>('/api/v1/bundles', {
    schema: {
      body: {
        type: 'object',
        required: ['os', 'arch', 'address'],
        additionalProperties: false,
        properties: {
          os: { type: 'string', enum: [...OPERATING_SYSTEMS] },
          arch: { type: 'string', enum: [...ARCHITECTURES] },
          address: {
            anyOf: [
              ADDRESS_SCHEMA,
              { type: 'array', minItems: 1, maxItems: MAX_INGEST_ADDRESSES, items: ADDRESS_SCHEMA },
            ],
          },
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
      const built = await ctx.services.bundles.build(bundleRequest, { by: request.adminName, ...(body.agent_version !== undefined ? { agentVersion: body.agent_version } : {}) });
      reply.code(201);
      return { ...bundleView(built), download: `/api/v1/bundles/${built.bundleId}` };
    },
  });

  app.get<{ Querystring: { limit?: string; offset?: string } }>('/api/v1/bundles', {
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { limit: pageLimitSchema, offset: pageOffsetSchema } },
      response: { 200: { type: 'array', items: recordSchema } },
    },
    handler: async (request, reply) => {
      const page = await ctx.services.bundles.list({ limit: Number(request.query.limit ?? DEFAULT_BUNDLE_PAGE), offset: Number(request.query.offset ?? 0) });
      reply.header('x-total-count', String(page.total));
      return page.bundles.map(recordView);
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/bundles/:id', {
    // The zip holds an enrolment token: a secret, which a viewer may not take.
    config: { access: 'write' },
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: BUNDLE_ID } } } },
    handler: async (request, reply) => {
      const { file, path } = await ctx.services.bundles.zip(request.params.id, request.adminName);
      return reply
        .header('content-type', 'application/zip')
        .header('content-disposition', `attachment; filename="${file}"`)
        .send(createReadStream(path));
    },
  });

  app.delete<{ Params: { id: string } }>('/api/v1/bundles/:id', {
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: BUNDLE_ID } } } },
    handler: async (request, reply) => {
      await ctx.services.bundles.withdraw(request.params.id, request.adminName);
      return reply.code(204).send();
    },
  });
}
