import Fastify, { type FastifyBaseLogger, type FastifyError, type FastifyInstance } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import type { TlsMaterial } from '../pki/certificates.ts';
import { loginRoute, requireAdmin } from './admin-auth.ts';
import { adminBundleRoutes } from './admin-bundles.ts';
import { adminHostRoutes } from './admin-hosts.ts';
import { adminInventoryRoutes } from './admin-inventory.ts';
import { adminTaskRoutes } from './admin-tasks.ts';
import { adminTokenRoutes } from './admin-tokens.ts';
import type { HttpContext } from './context.ts';
import { publicRoutes } from './public-routes.ts';

export interface HttpServer {
  port: number;
  stop(): Promise<void>;
}

export async function startHttpServer(listen: string, port: number, tls: TlsMaterial, ctx: HttpContext): Promise<HttpServer> {
  const app: FastifyInstance = Fastify({
    https: { key: tls.serverKeyPem, cert: tls.serverCertPem },
    loggerInstance: ctx.log.child({ area: 'http' }) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  });
  app.setErrorHandler((error: FastifyError | CtOpsError, request, reply) => {
    if (error instanceof CtOpsError) {
      return reply.code(error.httpStatus).send({ error: error.toJSON() });
    }
    if ((error as FastifyError).validation) {
      return reply.code(400).send({ error: { code: 'ERR_INVALID_ARGUMENT', message: error.message, details: {} } });
    }
    const status = (error as FastifyError).statusCode;
    if (status && status >= 400 && status < 500) {
      return reply.code(status).send({ error: { code: 'ERR_INVALID_ARGUMENT', message: error.message, details: {} } });
    }
    request.log.error({ err: error }, 'request failed');
    return reply.code(500).send({ error: { code: 'ERR_INTERNAL', message: 'internal error', details: {} } });
  });
  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({ error: { code: 'ERR_NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}`, details: {} } }),
  );
  await app.register(publicRoutes, ctx);
  await app.register(loginRoute, ctx);
  await app.register(async (admin) => {
    await requireAdmin(admin, ctx);
    await adminHostRoutes(admin, ctx);
    await adminTokenRoutes(admin, ctx);
    await adminBundleRoutes(admin, ctx);
    await adminTaskRoutes(admin, ctx);
    await adminInventoryRoutes(admin, ctx);
  });
  try {
    await app.listen({ host: listen, port });
  } catch (cause) {
    throw new CtOpsError('ERR_LISTEN_FAILED', `cannot listen for HTTPS on ${listen}:${port}: ${(cause as Error).message}`, { listen, port }, { cause });
  }
  const address = app.server.address();
  return { port: typeof address === 'object' && address ? address.port : port, stop: () => app.close() };
}
