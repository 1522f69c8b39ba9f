import type { FastifyInstance } from 'fastify';
import type { Host, HostEvent } from '../model/host.ts';
import type { Stores } from '../store/index.ts';
import type { HttpContext } from './context.ts';
import { hostIdParams, hostSchema, hostView, iso } from './views.ts';

/** How many of a host's events `hosts show` includes. */
const SHOWN_EVENTS = 20;

/** What `hosts show` adds about identity: claimants while flagged, recent events, previous names. */
export async function hostIdentityView(stores: Stores, host: Host) {
  const event = (item: HostEvent) => ({ at: iso(item.at), host_id: item.hostId, kind: item.kind, details: item.details });
  return {
    identity_claimants: (await stores.hostClaimants.list(host.id)).map((claimant) => ({
      instance_id: claimant.instanceId,
      machine_fingerprint: claimant.machineFingerprint,
      hostname: claimant.hostname,
      source: claimant.source,
      first_seen: iso(claimant.firstSeen),
      last_seen: iso(claimant.lastSeen),
    })),
    previous_names: (await stores.hostEvents.ofKind(host.id, 'renamed', SHOWN_EVENTS, host.replaces)).map((item) => ({ hostname: item.details.from, until: iso(item.at) })),
    recent_events: (await stores.hostEvents.recent(host.id, SHOWN_EVENTS, host.replaces)).map(event),
  };
}

export const hostIdentitySchema = {
  identity_claimants: { type: 'array', items: { type: 'object', additionalProperties: true } },
  previous_names: { type: 'array', items: { type: 'object', additionalProperties: true } },
  recent_events: { type: 'array', items: { type: 'object', additionalProperties: true } },
} as const;

/** `hosts resolve` and `hosts approve --replaces`: the admin's answers to cloned and reimaged machines. */
export async function adminHostIdentityRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { services, orgId } = ctx;
  app.post<{ Params: { id: string }; Body: { keep: string } }>('/api/v1/hosts/:id/resolve', {
    schema: {
      params: hostIdParams,
      body: { type: 'object', required: ['keep'], additionalProperties: false, properties: { keep: { type: 'string', pattern: '^([0-9a-f]{16}|[0-9a-f]{64})$' } } },
      response: { 200: hostSchema },
    },
    handler: async (request) => hostView(await services.hosts.resolveIdentity(orgId, request.params.id, request.body.keep, request.adminName, Date.now()), services.presence),
  });
  app.post<{ Params: { id: string } }>('/api/v1/hosts/:id/dismiss-identity-conflict', {
    schema: { params: hostIdParams, body: { type: 'object', additionalProperties: false, properties: {} }, response: { 200: hostSchema } },
    handler: async (request) => hostView(await services.hosts.dismissIdentityConflict(orgId, request.params.id, request.adminName, Date.now()), services.presence),
  });
  app.post<{ Params: { id: string }; Body: { replaces: string; force?: boolean } }>('/api/v1/hosts/:id/approve-as-replacement', {
    schema: {
      params: hostIdParams,
      body: { type: 'object', required: ['replaces'], additionalProperties: false, properties: { replaces: hostIdParams.properties.id, force: { type: 'boolean' } } },
      response: { 200: hostSchema },
    },
    handler: async (request) => hostView(await services.hosts.approveAsReplacement(orgId, request.params.id, request.body.replaces, request.adminName, Date.now(), request.body.force === true), services.presence),
  });
}
