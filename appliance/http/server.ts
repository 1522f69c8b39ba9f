import helmet from '@fastify/helmet';
import swagger from '@fastify/swagger';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { escapeUnsafeJson } from '../../common/agent-text.ts';
import { PRODUCT_VERSION } from '../../common/version.ts';
import { CtOpsError } from '../../common/errors.ts';
import type { TlsMaterial } from '../pki/certificates.ts';
import { adminAccountRoutes, loginRoute, requireAdmin } from './admin-auth.ts';
import { adminAuditRoutes } from './admin-audit.ts';
import { adminBundleRoutes } from './admin-bundles.ts';
import { adminCertsRoutes } from './admin-certs.ts';
import { adminRuntimeRoutes } from './admin-runtime.ts';
import { adminHostRoutes } from './admin-hosts.ts';
import { adminHostIdentityRoutes } from './admin-host-identity.ts';
import { adminInventoryRoutes } from './admin-inventory.ts';
import { adminTaskRoutes } from './admin-tasks.ts';
import { adminTokenRoutes } from './admin-tokens.ts';
import { adminReleaseRoutes, adminRolloutRoutes } from './admin-releases.ts';
import { agentDownloadRoutes } from './agent-downloads.ts';
import { auditRequests } from './audit-hook.ts';
import { consoleRoutes } from '../console/plugin.tsx';
import type { HttpContext } from './context.ts';
import { catalogueError, handleClientError, handleNotFound, handleRequestError, sendCatalogueError } from './errors.ts';
import { publicRoutes } from './public-routes.ts';
import { refuseNulCharacters } from './nul-characters.ts';
import { boundRequestArrival } from './request-arrival.ts';

export interface HttpServer {
  port: number;
  /** Serves this certificate on new connections from now on (`certs rotate-server`). */
  useCertificate(certPem: string, keyPem: string): void;
  stop(): Promise<void>;
}

export async function startHttpServer(listen: string, port: number, tls: TlsMaterial, ctx: HttpContext): Promise<HttpServer> {
  const app: FastifyInstance = Fastify({
    https: { key: tls.serverKeyPem, cert: tls.serverCertPem },
    loggerInstance: ctx.log.child({ area: 'http' }) as FastifyBaseLogger,
    bodyLimit: 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    // A malformed URL is refused before routing, and a malformed request before fastify sees it.
    frameworkErrors: (error, _request, reply) => sendCatalogueError(reply, catalogueError(error)),
    clientErrorHandler: handleClientError,
  });
  app.setErrorHandler(handleRequestError);
  await boundRequestArrival(app);
  app.addHook('preValidation', refuseNulCharacters);
  app.setNotFoundHandler(handleNotFound);
  // The API reads JSON only: any other body is ERR_UNSUPPORTED_MEDIA_TYPE, not a string to validate.
  app.removeContentTypeParser('text/plain');
  // Registered before every route: it collects their schemas (onRoute) into the OpenAPI document
  // (GET /api/v1/openapi.json, the console's /console/api). Only the API is in it.
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'CT-Ops Appliance admin API', version: PRODUCT_VERSION, description: 'The admin API of one CT-Ops appliance. Errors: {"error": {code, message, details}} with the codes of docs/errors.md.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'An API token (ctapi_…, made in the console), a login session (ctses_…) or the local CLI credential (ctadm_…); agent downloads take the agent JWT.' } } },
      security: [{ bearer: [] }],
    },
    transform: ({ schema, url }) => ({ schema: url.startsWith('/api/v1/') ? schema : { ...schema, hide: true }, url }),
  });
  await app.register(helmet, {
    // A JSON API loads nothing and is framed by nothing; the console will widen this for its own pages.
    contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"], baseUri: ["'none'"], formAction: ["'none'"] } },
    frameguard: { action: 'deny' },
    strictTransportSecurity: { maxAge: 365 * 86_400, includeSubDomains: false },
  });
  // Admin API answers and console pages carry secrets (login sessions, enrolment tokens, bundles with
  // a token inside) and fleet data: no cache, browser or proxy, keeps any of them. Only the console's
  // content-hashed assets say otherwise. Agent text inside JSON answers leaves with its C1 and
  // bidirectional characters escaped (common/agent-text.ts), as the CLI prints it.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
    const json = typeof payload === 'string' && String(reply.getHeader('content-type') ?? '').startsWith('application/json');
    return json ? escapeUnsafeJson(payload) : payload;
  });
  // Before every route, so the console's scope and the admin API's inherit its hooks.
  await auditRequests(app, ctx);
  await app.register(publicRoutes, ctx);
  // Its own scope: its cookie, form and CSRF plugins, its CSP and its HTML error pages stay there.
  await app.register(consoleRoutes, { ...ctx, prefix: '/console' });
  app.get('/', (_request, reply) => reply.redirect('/console/', 303));
  await app.register(loginRoute, ctx);
  await app.register(agentDownloadRoutes, ctx);
  await app.register(async (admin) => {
    await requireAdmin(admin, ctx);
    await adminHostRoutes(admin, ctx);
    await adminHostIdentityRoutes(admin, ctx);
    await adminTokenRoutes(admin, ctx);
    await adminBundleRoutes(admin, ctx);
    await adminReleaseRoutes(admin, ctx);
    await adminRolloutRoutes(admin, ctx);
    await adminTaskRoutes(admin, ctx);
    await adminInventoryRoutes(admin, ctx);
    await adminCertsRoutes(admin, ctx);
    await adminRuntimeRoutes(admin, ctx);
    await adminAccountRoutes(admin, ctx);
    // The document of every /api/v1 route, generated from their schemas (@fastify/swagger).
    admin.get('/api/v1/openapi.json', { schema: { hide: true } }, async () => app.swagger());
    await adminAuditRoutes(admin, ctx);
  });
  try {
    await app.listen({ host: listen, port });
  } catch (cause) {
    throw new CtOpsError('ERR_LISTEN_FAILED', `cannot listen for HTTPS on ${listen}:${port}: ${(cause as Error).message}`, { listen, port }, { cause });
  }
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address ? address.port : port,
    // fastify's server is Node's https.Server: setSecureContext swaps the certificate for new handshakes.
    useCertificate: (certPem, keyPem) => (app.server as import('node:https').Server).setSecureContext({ cert: certPem, key: keyPem }),
    stop: () => app.close(),
  };
}
