import type { FastifyInstance } from 'fastify';
import { PassThrough, type Readable } from 'node:stream';
import { CtOpsError } from '../../common/errors.ts';
import type { AgentRelease } from '../model/release.ts';
import type { HttpContext } from './context.ts';
import { iso } from './views.ts';

/** The media types of a release archive upload: a tar, or a gzip'd tar (what `releases import` sends). */
const ARCHIVE_TYPES = ['application/x-tar', 'application/gzip'];

const VERSION_PARAMS = {
  type: 'object',
  required: ['version'],
  properties: { version: { type: 'string', pattern: '^(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,8})\\.(0|[1-9][0-9]{0,8})$' } },
} as const;

const releaseSchema = {
  type: 'object',
  required: ['version', 'state', 'key_id', 'trusted_comment', 'files', 'imported_at', 'imported_by', 'retired_at'],
  properties: {
    version: { type: 'string' },
    state: { type: 'string', enum: ['active', 'retired'] },
    key_id: { type: 'string' },
    trusted_comment: { type: 'string' },
    files: {
      type: 'array',
      items: { type: 'object', required: ['name', 'sha256', 'size'], properties: { name: { type: 'string' }, sha256: { type: 'string' }, size: { type: 'integer' } } },
    },
    imported_at: { type: 'string' },
    imported_by: { type: 'string' },
    retired_at: { type: ['string', 'null'] },
  },
} as const;

function releaseView(release: AgentRelease): Record<string, unknown> {
  return {
    version: release.version,
    state: release.retiredAt === null ? 'active' : 'retired',
    key_id: release.keyId,
    trusted_comment: release.trustedComment,
    files: release.files,
    imported_at: iso(release.importedAt),
    imported_by: release.importedBy,
    retired_at: iso(release.retiredAt),
  };
}

/** The agent release catalogue (ReleaseService): import from an uploaded archive, list, show, retire. */
export async function adminReleaseRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { releases } = ctx.services;
  // The archive is streamed to the service, never buffered: it holds executables of ~110 MB each.
  // Its size is bounded by the service's rules (entries, bytes per file), not by bodyLimit.
  app.addContentTypeParser(ARCHIVE_TYPES, (_request, payload, done) => done(null, payload));

  app.get('/api/v1/releases', {
    schema: { response: { 200: { type: 'array', items: releaseSchema } } },
    handler: async () => (await releases.list()).map(releaseView),
  });

  app.get<{ Params: { version: string } }>('/api/v1/releases/:version', {
    schema: { params: VERSION_PARAMS, response: { 200: releaseSchema } },
    handler: async (request) => releaseView(await releases.get(request.params.version)),
  });

  app.post<{ Querystring: { allow_older?: 'true' | 'false' } }>('/api/v1/releases', {
    schema: {
      querystring: { type: 'object', additionalProperties: false, properties: { allow_older: { type: 'string', enum: ['true', 'false'] } } },
      response: { '2xx': { type: 'object', required: ['imported', 'release'], properties: { imported: { type: 'boolean' }, release: releaseSchema } } },
    },
    handler: async (request, reply) => {
      const upload = request.body as Readable | undefined;
      if (typeof upload?.pipe !== 'function') throw new CtOpsError('ERR_UNSUPPORTED_MEDIA_TYPE', `a release is uploaded as ${ARCHIVE_TYPES.join(' or ')}`);
      // The service may stop reading a refused archive early: it ends this pipe, not the request,
      // so the refusal is still answered (Node discards the rest of the body).
      const archive = upload.pipe(new PassThrough());
      const allowOlder = request.query.allow_older === 'true';
      const outcome = await releases.importArchive(archive, { allowOlder, importedBy: request.adminName }, Date.now());
      reply.code(outcome.imported ? 201 : 200);
      return { imported: outcome.imported, release: releaseView(outcome.release) };
    },
  });

  app.post<{ Params: { version: string } }>('/api/v1/releases/:version/retire', {
    schema: { params: VERSION_PARAMS, response: { 200: releaseSchema } },
    handler: async (request) => releaseView(await releases.retire(request.params.version, Date.now())),
  });
}
