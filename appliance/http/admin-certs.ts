import type { FastifyInstance } from 'fastify';
import type { HttpContext } from './context.ts';

const count = { type: 'integer' } as const;
const certsStatusSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['phase', 'generation', 'ca_fingerprint', 'next_ca_fingerprint', 'server_certificate', 'hosts', 'without_bundle', 'pending'],
  properties: {
    phase: { type: 'string', enum: ['standby', 'update-clients', 'update-servers'] },
    generation: count,
    ca_fingerprint: { type: 'string' },
    next_ca_fingerprint: { type: ['string', 'null'] },
    server_certificate: {
      type: 'object',
      additionalProperties: false,
      properties: { fingerprint: { type: 'string' }, issuer: { type: 'string' }, sans: { type: 'array', items: { type: 'string' } }, not_after: { type: 'string' } },
    },
    hosts: {
      type: 'object',
      additionalProperties: false,
      properties: { active: count, online_with_bundle: count, online_without: count, offline_with_bundle: count, offline_without: count },
    },
    without_bundle: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        properties: { host_id: { type: 'string' }, hostname: { type: 'string' }, online: { type: 'boolean' }, trust_generation: count },
      },
    },
    pending: {
      type: 'array',
      items: { type: 'object', additionalProperties: false, properties: { host_id: { type: 'string' }, hostname: { type: 'string' } } },
    },
  },
} as const;

/** `certs status`, `certs rotate-server`, `certs rotate-ca`: the routes translate; CertificateService decides. */
export async function adminCertsRoutes(app: FastifyInstance, { certs }: HttpContext): Promise<void> {
  app.get('/api/v1/certs', { schema: { response: { 200: certsStatusSchema } }, handler: async () => certs.status() });
  app.post('/api/v1/certs/rotate-server', {
    schema: { body: { type: 'object', additionalProperties: false, properties: {} }, response: { 200: certsStatusSchema } },
    handler: async (request) => certs.rotateServer(new Date(), request.adminName),
  });
  app.post<{ Body: { step: 'start' | 'switch' | 'finish'; force?: boolean } }>('/api/v1/certs/rotate-ca', {
    schema: {
      body: { type: 'object', required: ['step'], additionalProperties: false, properties: { step: { type: 'string', enum: ['start', 'switch', 'finish'] }, force: { type: 'boolean' } } },
      response: { 200: certsStatusSchema },
    },
    handler: async (request) => certs.rotateCa(request.body.step, request.body.force === true, new Date(), request.adminName),
  });
}
