import type { FastifyInstance } from 'fastify';
import { idPatternSource } from '../../common/ids.ts';
import { DEFAULT_TOKEN_LIFETIME_MS } from '../enrolment/tokens.ts';
import type { HttpContext } from './context.ts';
import { tokenSchema, tokenView } from './views.ts';

interface CreateTokenBody {
  label?: string;
  expires_in_secs?: number;
  max_uses?: number;
  auto_approve?: boolean;
  tags?: Record<string, string>;
}

export async function adminTokenRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { services, orgId } = ctx;

  app.get('/api/v1/tokens', {
    schema: { response: { 200: { type: 'array', items: tokenSchema } } },
    handler: async () => {
      const now = Date.now();
      return (await services.enrolment.listTokens(orgId)).map((token) => tokenView(token, now));
    },
  });

  app.post<{ Body: CreateTokenBody }>('/api/v1/tokens', {
    schema: {
      body: {
        type: 'object',
        additionalProperties: false,
        properties: {
          label: { type: 'string', maxLength: 128 },
          expires_in_secs: { type: 'integer', minimum: 60, maximum: 366 * 86_400 },
          max_uses: { type: 'integer', minimum: 1, maximum: 100_000 },
          auto_approve: { type: 'boolean' },
          tags: {
            type: 'object',
            maxProperties: 32,
            propertyNames: { type: 'string', minLength: 1, maxLength: 64 },
            additionalProperties: { type: 'string', maxLength: 256 },
          },
        },
      },
      response: { 201: { type: 'object', required: ['token', ...tokenSchema.required], properties: { ...tokenSchema.properties, token: { type: 'string' } } } },
    },
    handler: async (request, reply) => {
      const now = Date.now();
      const body = request.body;
      const created = await services.enrolment.issueToken(
        orgId,
        {
          label: body.label ?? '',
          expiresInMs: body.expires_in_secs !== undefined ? body.expires_in_secs * 1000 : DEFAULT_TOKEN_LIFETIME_MS,
          maxUses: body.max_uses ?? 1,
          autoApprove: body.auto_approve ?? false,
          tags: body.tags ?? {},
          createdBy: request.adminName,
          source: 'admin',
          metadata: {},
        },
        now,
      );
      reply.code(201);
      return { ...tokenView(created.token, now), token: created.secret };
    },
  });

  app.post<{ Params: { id: string } }>('/api/v1/tokens/:id/revoke', {
    schema: {
      params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('etk') } } },
      response: { 200: tokenSchema },
    },
    handler: async (request) => {
      const now = Date.now();
      return tokenView(await services.enrolment.revokeToken(orgId, request.params.id, request.adminName, now), now);
    },
  });
}
