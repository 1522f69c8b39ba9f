import type { FastifyInstance } from 'fastify';
import { PACKAGE_FIELD_LIMITS } from '../../common/inventory-records.ts';
import { INVENTORY_INTERVAL_HOURS, REMOVED_RETENTION_DAYS, type InventorySettings } from '../inventory/settings.ts';
import type { HostPackageRecord, SoftwarePackageRecord, SoftwareScan } from '../model/inventory.ts';
import type { HttpContext } from './context.ts';
import { hostIdParams, iso, nullableString } from './views.ts';

/** A package of a host as the admin API shows it; install_date is reported in seconds, shown like every time. */
export function packageView(pkg: SoftwarePackageRecord) {
  return {
    name: pkg.name,
    version: pkg.version,
    source: pkg.source,
    architecture: pkg.architecture,
    publisher: pkg.publisher,
    install_date: iso(pkg.installDate === null ? null : pkg.installDate * 1000),
    is_removed: pkg.isRemoved,
    first_seen: iso(pkg.firstSeen),
    last_seen: iso(pkg.lastSeen),
    removed_at: iso(pkg.removedAt),
  };
}

/** One answer of a package search: which host, and which of its records. */
export function packageHostView(pkg: HostPackageRecord) {
  return {
    host_id: pkg.hostId,
    hostname: pkg.hostname,
    name: pkg.name,
    version: pkg.version,
    source: pkg.source,
    architecture: pkg.architecture,
    is_removed: pkg.isRemoved,
    first_seen: iso(pkg.firstSeen),
    last_seen: iso(pkg.lastSeen),
  };
}

export function scanView(scan: SoftwareScan) {
  return {
    id: scan.id,
    task_id: scan.taskId,
    status: scan.status,
    started_at: iso(scan.startedAt),
    completed_at: iso(scan.completedAt),
    chunks: scan.chunks,
    packages_received: scan.packagesReceived,
    added: scan.added,
    removed: scan.removed,
    unchanged: scan.unchanged,
    skipped: scan.skipped,
    error_code: scan.errorCode,
  };
}

export function inventorySettingsView(settings: InventorySettings) {
  const { snap, flatpak, windowsStore } = settings.optionalSources;
  return { interval_hours: settings.intervalHours, sources: { snap, flatpak, windows_store: windowsStore }, removed_retention_days: settings.removedRetentionDays };
}

const packageSchema = {
  type: 'object',
  required: ['name', 'version', 'source', 'is_removed', 'first_seen', 'last_seen'],
  properties: {
    name: { type: 'string' },
    version: { type: 'string' },
    source: { type: 'string' },
    architecture: { type: 'string' },
    publisher: { type: 'string' },
    install_date: nullableString,
    is_removed: { type: 'boolean' },
    first_seen: { type: 'string' },
    last_seen: { type: 'string' },
    removed_at: nullableString,
  },
} as const;
const packageHostSchema = {
  type: 'object',
  required: ['host_id', 'hostname', 'name', 'version', 'is_removed'],
  properties: {
    host_id: { type: 'string' },
    hostname: { type: 'string' },
    ...packageSchema.properties,
  },
} as const;
const scanSchema = {
  type: 'object',
  required: ['id', 'status', 'started_at'],
  properties: {
    id: { type: 'string' },
    task_id: { type: 'string' },
    status: { type: 'string', enum: ['receiving', 'completed', 'failed', 'abandoned'] },
    started_at: { type: 'string' },
    completed_at: nullableString,
    chunks: { type: 'integer' },
    packages_received: { type: 'integer' },
    added: { type: 'integer' },
    removed: { type: 'integer' },
    unchanged: { type: 'integer' },
    skipped: {
      type: 'array',
      items: { type: 'object', required: ['reason', 'count', 'example'], properties: { reason: { type: 'string' }, count: { type: 'integer' }, example: { type: 'string' }, on_host: { type: 'boolean' } } },
    },
    error_code: nullableString,
  },
} as const;
const sourcesSchema = {
  type: 'object',
  additionalProperties: false,
  properties: { snap: { type: 'boolean' }, flatpak: { type: 'boolean' }, windows_store: { type: 'boolean' } },
} as const;
const intervalSchema = { type: 'integer', minimum: INVENTORY_INTERVAL_HOURS.min, maximum: INVENTORY_INTERVAL_HOURS.max } as const;
const retentionSchema = { type: 'integer', minimum: REMOVED_RETENTION_DAYS.min, maximum: REMOVED_RETENTION_DAYS.max } as const;
const settingsSchema = {
  type: 'object',
  required: ['interval_hours', 'sources', 'removed_retention_days'],
  properties: { interval_hours: intervalSchema, sources: sourcesSchema, removed_retention_days: retentionSchema },
} as const;
const settingsPatchSchema = { type: 'object', additionalProperties: false, properties: settingsSchema.properties } as const;

/** Printable text of bounded length, as the ingest side accepts it (no control characters). */
const text = (max: number) => ({ type: 'string', minLength: 1, maxLength: max, pattern: '^[^\\u0000-\\u001f\\u007f]+$' }) as const;
const flag = { type: 'string', enum: ['true', 'false'] } as const;
/** Well above a real host's package count, so one page is usually all; the CLI pages on. */
const PACKAGE_PAGE_MAX = 5000;
const DEFAULT_SCAN_LIMIT = 20;
// Query values are text and the server does not coerce types: digits here, numbers in the handlers.
const packagesQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    removed: flag,
    limit: { type: 'string', pattern: '^(5000|[1-4][0-9]{3}|[1-9][0-9]{0,2})$' },
    offset: { type: 'string', pattern: '^(0|[1-9][0-9]{0,8})$' },
  },
} as const;
const scansQuery = { type: 'object', additionalProperties: false, properties: { limit: { type: 'string', pattern: '^(1000|[1-9][0-9]{0,2})$' } } } as const;
const searchQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: text(PACKAGE_FIELD_LIMITS.name), min_version: text(PACKAGE_FIELD_LIMITS.version), max_version: text(PACKAGE_FIELD_LIMITS.version), include_removed: flag },
} as const;

interface SettingsPatchBody {
  interval_hours?: number;
  removed_retention_days?: number;
  sources?: { snap?: boolean; flatpak?: boolean; windows_store?: boolean };
}

/** Software inventory as admins read it: per-host packages and scans, package search, and the organisation's settings. */
export async function adminInventoryRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { orgId } = ctx;
  const { inventory } = ctx.services;
  /** Another organisation's host is not found, exactly like an unknown one. */
  const hostOfOrg = async (id: string): Promise<string> => (await ctx.services.hosts.hostOfOrg(orgId, id, { includeDeleted: true })).id;

  app.get<{ Params: { id: string }; Querystring: { removed?: string; limit?: string; offset?: string } }>('/api/v1/hosts/:id/packages', {
    schema: { params: hostIdParams, querystring: packagesQuery, response: { 200: { type: 'array', items: packageSchema } } },
    handler: async (request) => {
      const { removed, limit, offset } = request.query;
      const page = { limit: limit === undefined ? PACKAGE_PAGE_MAX : Number(limit), offset: Number(offset ?? 0) };
      return (await inventory.packages(await hostOfOrg(request.params.id), { liveOnly: removed !== 'true', page })).map(packageView);
    },
  });

  app.get<{ Params: { id: string }; Querystring: { limit?: string } }>('/api/v1/hosts/:id/scans', {
    schema: { params: hostIdParams, querystring: scansQuery, response: { 200: { type: 'array', items: scanSchema } } },
    handler: async (request) => {
      const limit = request.query.limit === undefined ? DEFAULT_SCAN_LIMIT : Number(request.query.limit);
      return (await inventory.scans(await hostOfOrg(request.params.id), limit)).map(scanView);
    },
  });

  app.get<{ Querystring: { name: string; min_version?: string; max_version?: string; include_removed?: string } }>('/api/v1/software', {
    schema: { querystring: searchQuery, response: { 200: { type: 'array', items: packageHostSchema } } },
    handler: async (request) => {
      const { name, min_version: minVersion, max_version: maxVersion, include_removed: includeRemoved } = request.query;
      return (await inventory.search(orgId, { name, minVersion, maxVersion, includeRemoved: includeRemoved === 'true' })).map(packageHostView);
    },
  });

  app.get('/api/v1/settings/inventory', {
    schema: { response: { 200: settingsSchema } },
    handler: async () => inventorySettingsView(await inventory.settings(orgId)),
  });

  app.patch<{ Body: SettingsPatchBody }>('/api/v1/settings/inventory', {
    schema: { body: settingsPatchSchema, response: { 200: settingsSchema } },
    handler: async (request) => {
      const { interval_hours: intervalHours, removed_retention_days: removedRetentionDays, sources = {} } = request.body;
      const optionalSources = { snap: sources.snap, flatpak: sources.flatpak, windowsStore: sources.windows_store };
      const settings = await inventory.updateSettings(orgId, { intervalHours, optionalSources, removedRetentionDays });
      const view = inventorySettingsView(settings);
      ctx.log.info({ ...view, by: request.adminName }, 'inventory settings changed');
      return view;
    },
  });
}
