import type { FastifyInstance } from 'fastify';
import { PassThrough, type Readable } from 'node:stream';
import { CtOpsError } from '../../common/errors.ts';
import { idPatternSource } from '../../common/ids.ts';
import type { AgentRelease, ReleaseMinimum } from '../model/release.ts';
import type { GroupSelector, Rollout } from '../model/rollout.ts';
import type { RolloutStatus } from '../releases/rollouts.ts';
import { RELEASE_VERSION_SOURCE } from '../../common/release-version.ts';
import type { HttpContext } from './context.ts';
import { iso, nullableString } from './views.ts';

/** The media types of a release archive upload: a tar, or a gzip'd tar (what `releases import` sends). */
const ARCHIVE_TYPES = ['application/x-tar', 'application/gzip'];

const VERSION_PARAMS = {
  type: 'object',
  required: ['version'],
  properties: { version: { type: 'string', pattern: `^${RELEASE_VERSION_SOURCE}$` } },
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
    retired_at: nullableString,
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
      const archive = new PassThrough();
      upload.pipe(archive);
      // pipe passes on neither an error nor a cut: either ends the archive with an error, so the import stops.
      const cut = (): void => {
        if (!request.raw.complete) archive.destroy(new CtOpsError('ERR_RELEASE_INVALID', 'the upload was cut off before its end'));
      };
      request.raw.once('close', cut);
      upload.once('error', (error) => archive.destroy(error));
      // The service stops reading a refused archive early: the rest of the body is read and dropped, so the refusal is answered.
      archive.once('close', () => {
        if (upload.readableEnded) return;
        upload.unpipe(archive);
        upload.resume();
      });
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

interface SelectorBody {
  kind: 'all' | 'tag' | 'hosts';
  key?: string;
  value?: string;
  host_ids?: string[];
}

interface RolloutBody {
  version: string;
  groups?: Array<{ name: string; selector: SelectorBody; success_percent?: number; maintenance_window?: string }>;
}

const selectorSchema = {
  oneOf: [
    { type: 'object', additionalProperties: false, required: ['kind'], properties: { kind: { const: 'all' } } },
    { type: 'object', additionalProperties: false, required: ['kind', 'key', 'value'], properties: { kind: { const: 'tag' }, key: { type: 'string', minLength: 1, maxLength: 64 }, value: { type: 'string', maxLength: 256 } } },
    {
      type: 'object',
      additionalProperties: false,
      required: ['kind', 'host_ids'],
      properties: { kind: { const: 'hosts' }, host_ids: { type: 'array', minItems: 1, maxItems: 10_000, uniqueItems: true, items: { type: 'string', pattern: idPatternSource('hst') } } },
    },
  ],
} as const;

function selectorOf(body: SelectorBody): GroupSelector {
  if (body.kind === 'tag') return { kind: 'tag', key: body.key!, value: body.value! };
  if (body.kind === 'hosts') return { kind: 'hosts', hostIds: body.host_ids! };
  return { kind: 'all' };
}

function selectorView(selector: GroupSelector): Record<string, unknown> {
  if (selector.kind === 'tag') return { kind: 'tag', key: selector.key, value: selector.value };
  if (selector.kind === 'hosts') return { kind: 'hosts', host_ids: selector.hostIds };
  return { kind: 'all' };
}


const selectorViewSchema = {
  type: 'object',
  required: ['kind'],
  properties: { kind: { type: 'string', enum: ['all', 'tag', 'hosts'] }, key: { type: 'string' }, value: { type: 'string' }, host_ids: { type: 'array', items: { type: 'string' } } },
} as const;

const rolloutSchema = {
  type: 'object',
  required: ['id', 'version', 'state', 'halted_reason', 'created_at', 'created_by', 'updated_at', 'groups'],
  properties: {
    id: { type: 'string' },
    version: { type: 'string' },
    state: { type: 'string', enum: ['running', 'paused', 'halted', 'completed', 'superseded'] },
    halted_reason: nullableString,
    created_at: { type: 'string' },
    created_by: { type: 'string' },
    updated_at: { type: 'string' },
    groups: {
      type: 'array',
      items: {
        type: 'object',
        required: ['position', 'name', 'selector', 'success_percent', 'started_at', 'maintenance_window'],
        properties: { position: { type: 'integer' }, name: { type: 'string' }, selector: selectorViewSchema, success_percent: { type: 'integer' }, started_at: nullableString, maintenance_window: nullableString },
      },
    },
  },
} as const;

const rolloutStatusSchema = {
  type: 'object',
  required: ['rollout', 'groups', 'hosts'],
  properties: {
    rollout: rolloutSchema,
    groups: {
      type: 'array',
      items: {
        type: 'object',
        required: ['name', 'started_at', 'hosts', 'eligible', 'healthy', 'rolled_back', 'failed', 'met', 'maintenance_window', 'window_open'],
        properties: {
          name: { type: 'string' },
          started_at: nullableString,
          hosts: { type: 'integer' },
          eligible: { type: 'integer' },
          healthy: { type: 'integer' },
          rolled_back: { type: 'integer' },
          failed: { type: 'integer' },
          met: { type: 'boolean' },
          maintenance_window: nullableString,
          window_open: { type: ['boolean', 'null'] },
        },
      },
    },
    hosts: {
      type: 'array',
      items: {
        type: 'object',
        required: ['host_id', 'hostname', 'group', 'agent_version', 'update_version', 'phase', 'error_code', 'detail', 'updated_at'],
        properties: {
          host_id: { type: 'string' },
          hostname: { type: 'string' },
          group: nullableString,
          agent_version: { type: 'string' },
          update_version: nullableString,
          phase: nullableString,
          error_code: nullableString,
          detail: nullableString,
          updated_at: nullableString,
        },
      },
    },
  },
} as const;

function rolloutView(rollout: Rollout): Record<string, unknown> {
  return {
    id: rollout.id,
    version: rollout.version,
    state: rollout.state,
    halted_reason: rollout.haltedReason,
    created_at: iso(rollout.createdAt),
    created_by: rollout.createdBy,
    updated_at: iso(rollout.updatedAt),
    groups: rollout.groups.map((group) => ({ position: group.position, name: group.name, selector: selectorView(group.selector), success_percent: group.successPercent, started_at: iso(group.startedAt), maintenance_window: group.maintenanceWindow })),
  };
}

function statusView(status: RolloutStatus): Record<string, unknown> {
  return {
    rollout: rolloutView(status.rollout),
    groups: status.groups.map((entry) => ({ name: entry.group.name, started_at: iso(entry.group.startedAt), hosts: entry.hosts, eligible: entry.eligible, healthy: entry.healthy, rolled_back: entry.rolledBack, failed: entry.failed, met: entry.met, maintenance_window: entry.group.maintenanceWindow, window_open: entry.windowOpen })),
    hosts: status.hosts.map(({ host, group, update }) => ({
      host_id: host.id,
      hostname: host.hostname,
      group: group === undefined ? null : status.rollout.groups[group]!.name,
      agent_version: host.agentVersion,
      update_version: update?.version ?? null,
      phase: update?.phase ?? null,
      error_code: update?.errorCode ?? null,
      detail: update?.detail ?? null,
      updated_at: iso(update?.updatedAt ?? null),
    })),
  };
}

/** Agent update rollouts (RolloutService): start, status, pause, resume; rollbacks cleared per release. */
export async function adminRolloutRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { rollouts } = ctx.services;

  app.post<{ Body: RolloutBody }>('/api/v1/rollouts', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['version'],
        properties: {
          version: { type: 'string', pattern: `^${RELEASE_VERSION_SOURCE}$` },
          groups: {
            type: 'array',
            maxItems: 32,
            items: { type: 'object', additionalProperties: false, required: ['name', 'selector'], properties: { name: { type: 'string' }, selector: selectorSchema, success_percent: { type: 'integer' }, maintenance_window: { type: 'string', maxLength: 200 } } },
          },
        },
      },
      response: { 201: rolloutSchema },
    },
    handler: async (request, reply) => {
      const groups = (request.body.groups ?? []).map((group) => ({ name: group.name, selector: selectorOf(group.selector), ...(group.success_percent === undefined ? {} : { successPercent: group.success_percent }), ...(group.maintenance_window === undefined ? {} : { maintenanceWindow: group.maintenance_window }) }));
      const rollout = await rollouts.start(request.body.version, groups, request.adminName, Date.now());
      reply.code(201);
      return rolloutView(rollout);
    },
  });

  app.get('/api/v1/rollouts/current', {
    schema: { response: { 200: rolloutStatusSchema } },
    handler: async () => {
      const status = await rollouts.status(Date.now());
      if (status === undefined) throw new CtOpsError('ERR_ROLLOUT_NOT_FOUND', 'no rollout was ever started (releases rollout VERSION)');
      return statusView(status);
    },
  });

  app.post('/api/v1/rollouts/current/pause', { schema: { response: { 200: rolloutSchema } }, handler: async () => rolloutView(await rollouts.pause(Date.now())) });
  app.post('/api/v1/rollouts/current/resume', { schema: { response: { 200: rolloutSchema } }, handler: async () => rolloutView(await rollouts.resume(Date.now())) });

  const minimumSchema = {
    type: 'object',
    required: ['version', 'set_at', 'set_by'],
    properties: { version: { type: ['string', 'null'] }, set_at: { type: ['string', 'null'] }, set_by: { type: ['string', 'null'] } },
  } as const;
  const minimumView = (minimum: ReleaseMinimum | undefined) => ({ version: minimum?.version ?? null, set_at: iso(minimum?.setAt ?? null), set_by: minimum?.setBy ?? null });

  app.get('/api/v1/releases/minimum', {
    schema: { response: { 200: minimumSchema } },
    handler: async () => minimumView(await rollouts.minimum()),
  });

  app.put<{ Body: { version: string | null } }>('/api/v1/releases/minimum', {
    schema: {
      body: { type: 'object', additionalProperties: false, required: ['version'], properties: { version: { type: ['string', 'null'], pattern: `^${RELEASE_VERSION_SOURCE}$` } } },
      response: { 200: minimumSchema },
    },
    handler: async (request) => minimumView(await rollouts.setMinimum(request.body.version ?? undefined, request.adminName, Date.now())),
  });

  app.post<{ Params: { version: string }; Body: { host_id?: string } | undefined }>('/api/v1/releases/:version/clear-rollbacks', {
    schema: {
      params: VERSION_PARAMS,
      body: { type: 'object', additionalProperties: false, properties: { host_id: { type: 'string', pattern: idPatternSource('hst') } } },
      response: { 200: { type: 'object', required: ['cleared'], properties: { cleared: { type: 'integer' } } } },
    },
    handler: async (request) => ({ cleared: await rollouts.clearRollbacks(request.params.version, request.body?.host_id) }),
  });
}
