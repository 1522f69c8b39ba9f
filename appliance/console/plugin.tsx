import { createReadStream } from 'node:fs';
import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import formbody from '@fastify/formbody';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { VNode } from 'preact';
import { stringify } from 'csv-stringify/sync';
import { renderToString } from 'preact-render-to-string';
import { RateLimiterMemory } from 'rate-limiter-flexible';
import { CtOpsError } from '../../common/errors.ts';
import { idPatternSource } from '../../common/ids.ts';
import { parseBundleRequest, type BuiltBundle } from '../../bundler/index.ts';
import { tokenState } from '../enrolment/tokens.ts';
import { checkAccess, CONSOLE_SESSION_LABEL } from '../admin/accounts.ts';
import { accessOf, loginSource } from '../http/admin-auth.ts';
import { auditFilter, auditJsonLines, filterProperties as auditFilterProperties, type AuditQuery } from '../http/admin-audit.ts';
import { hostFilter, hostListQuery, hostSort, type HostListQuery } from '../http/admin-hosts.ts';
import type { HttpContext } from '../http/context.ts';
import { hostIdParams, iso } from '../http/views.ts';
import { catalogueError } from '../http/errors.ts';
import { HOST_CHANGE_TASKS } from '../hosts/service.ts';
import { HOST_STATUSES, statusOfHost, type HostStatus } from '../hosts/status.ts';
import { TOKEN_SCOPES, type AdminApiToken, type TokenScope } from '../model/admin.ts';
import { ASSETS_DIR, assetRoutes, readAssetManifest } from './assets.ts';
import { endStreamsOnClose, FleetEvents } from './live.ts';
import { ErrorPage, LoginPage, PasswordPage } from './pages/auth.tsx';
import { HostsPage, HostsTable, PendingList, PendingPage, type HostsData, type PendingHost } from './pages/hosts.tsx';
import { HOST_PACKAGES_PAGE, HostActivity, HostPage, HostSummary, type HostPageData } from './pages/host.tsx';
import { OverviewBody, OverviewPage, type OverviewData } from './pages/overview.tsx';
import { BUNDLES_SHOWN, BundlesPage, TokensPage, type TokenRow } from './pages/tokens.tsx';
import { SoftwarePage, type SoftwareQuery } from './pages/software.tsx';
import { ReleasesPage } from './pages/releases.tsx';
import { AuditPage, type AuditPageQuery } from './pages/audit.tsx';
import { ApiTokensPage } from './pages/api-tokens.tsx';
import { ApiDocsPage, type OpenApiDocument } from './pages/api-docs.tsx';
import { BACKGROUND_HEADER, clearSessionCookies, consoleSession, COOKIE_OPTIONS, CSRF_COOKIE, liveConsoleSessions, setSessionCookie } from './session.ts';
import type { PageFrame } from './views.tsx';

declare module 'fastify' {
  interface FastifyRequest {
    /** The console session of the request (undefined on public routes). */
    consoleAdmin: AdminApiToken | undefined;
  }
}

/**
 * The console's Content-Security-Policy (W3C CSP Level 3): scripts, styles, images and connections
 * from this origin only, no inline code of any kind, no framing, forms post here only; violations
 * are reported to /console/csp-report (and logged there).
 */
export const CONSOLE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "font-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
  'report-uri /console/csp-report',
].join('; ');

/** Hosts per page of the hosts list. */
/** The live stream's route (registered under /console): neither it nor what it makes the page fetch counts as the admin's use. */
const EVENTS_ROUTE = '/console/events';
const HOSTS_PAGE_SIZE = 50;
/** Pending hosts shown at once (the oldest first). */
const PENDING_SHOWN = 100;
/** Days before the server certificate's expiry from which the overview warns. */
const CERTIFICATE_WARNING_MS = 30 * 86_400_000;
const CSP_REPORT_LIMIT = 16 * 1024;
/** The host page's chart: the last 24 hours in about 300 points. */
const VITALS_WINDOW_MS = 24 * 3_600_000;
const VITALS_POINTS = 288;
/** Audit events per page. */
const AUDIT_PAGE_SIZE = 100;


/**
 * The admin console (issue 13), served on the admin HTTPS port under /console: server-rendered pages
 * (preact-render-to-string) that work as plain HTML forms, enhanced by htmx and live updates. It adds no
 * workflow: every action calls the same services as the admin API (ctx.services), under the same access
 * rules (accessOf, checkAccess). Sessions are cookies (session.ts); every state-changing request needs
 * the session's CSRF token (double submit, @fastify/csrf-protection).
 */
export async function consoleRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { services, orgId } = ctx;
  const manifest = readAssetManifest();
  if (manifest === undefined) {
    // Agents and the API do not depend on the console's files: the appliance runs, the console says why not.
    ctx.log.warn({ dir: ASSETS_DIR }, "the console's assets are missing (run `npm run build`): the console answers ERR_CONSOLE_UNAVAILABLE");
    app.all('/*', { config: { access: 'public' } }, async () => {
      throw new CtOpsError('ERR_CONSOLE_UNAVAILABLE', `the console's assets are missing from ${ASSETS_DIR}: run \`npm run build\``, { dir: ASSETS_DIR });
    });
    return;
  }
  const events = new FleetEvents(
    {
      fleet: () => services.hosts.changeMark(orgId),
      host: (hostId) => services.hosts.hostChangeMark(orgId, hostId),
      liveSessions: (sessionIds) => liveConsoleSessions(services.accounts, sessionIds, Date.now()),
    },
    ctx.log.child({ area: 'console' }),
  );
  endStreamsOnClose(app, events);
  const cspReports = new RateLimiterMemory({ points: 10, duration: 60 });

  await app.register(cookie);
  await app.register(formbody, { bodyLimit: 16 * 1024 });
  await app.register(csrf, { sessionPlugin: '@fastify/cookie', cookieKey: CSRF_COOKIE, cookieOpts: COOKIE_OPTIONS, getToken: (request: FastifyRequest) => (request.headers['x-csrf-token'] as string | undefined) ?? (request.body as { _csrf?: string } | undefined)?._csrf });
  app.decorateRequest('consoleAdmin', undefined);
  // Browsers report violations as these types (CSP2 report-uri, Reporting API); the JSON parser reads them.
  app.addContentTypeParser(['application/csp-report', 'application/reports+json'], { parseAs: 'string', bodyLimit: CSP_REPORT_LIMIT }, (_request, body, done) => {
    try {
      done(null, JSON.parse(body as string));
    } catch (error) {
      done(error as Error);
    }
  });

  app.addHook('onRequest', async (request, reply) => {
    reply.header('content-security-policy', CONSOLE_CSP);
    reply.header('referrer-policy', 'no-referrer');
    reply.header('permissions-policy', 'camera=(), microphone=(), geolocation=(), usb=(), payment=()');
    const access = accessOf(request);
    if (access === 'public') return;
    // The live stream and the fragments it makes the page fetch are not the admin's use: they keep no session alive.
    const byAdmin = request.routeOptions.url !== EVENTS_ROUTE && request.headers[BACKGROUND_HEADER] === undefined;
    const admin = await consoleSession(services.accounts, request, Date.now(), byAdmin);
    request.consoleAdmin = admin;
    if (admin.mustChangePassword && access !== 'session') {
      if (request.method === 'GET' && request.headers['hx-request'] === undefined) return reply.redirect('/console/password', 303);
      throw new CtOpsError('ERR_PASSWORD_CHANGE_REQUIRED', 'change your one-time password first');
    }
    checkAccess(admin, access);
    return undefined;
  });
  // How long the appliance took (W3C Server Timing): what bench:console reads, and what a browser's devtools show.
  app.addHook('onSend', async (_request, reply) => {
    reply.header('server-timing', `app;dur=${reply.elapsedTime.toFixed(1)}`);
  });
  app.addHook('preHandler', (request, reply, done) => {
    // Reading changes nothing; a CSP report is sent by the browser itself, with no token (and changes nothing either).
    if (request.method === 'GET' || request.method === 'HEAD' || request.routeOptions.url === '/console/csp-report') return done();
    app.csrfProtection(request, reply, done);
  });
  app.setErrorHandler(async (error: FastifyError | CtOpsError, request, reply) => {
    const known = catalogueError(error);
    if (known.code === 'ERR_INTERNAL') request.log.error({ err: error }, 'console request failed');
    if (known.code === 'ERR_ADMIN_UNAUTHENTICATED') {
      clearSessionCookies(reply);
      // htmx follows HX-Redirect with a full page load; a plain request follows the 303.
      if (request.headers['hx-request'] !== undefined) return reply.code(401).header('hx-redirect', '/console/login').send();
      // A live stream cannot follow a redirect to a page: it is refused, and the page checks why (client/main.ts).
      if (request.routeOptions.url === EVENTS_ROUTE) return reply.code(401).send();
      return reply.redirect('/console/login', 303);
    }
    const retryAfter = known.details.retry_after_secs;
    if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
    return html(reply.code(known.httpStatus), <ErrorPage frame={frame(reply, request)} error={known} />);
  });
  app.setNotFoundHandler(async (request, reply) => html(reply.code(404), <ErrorPage frame={frame(reply, request)} error={new CtOpsError('ERR_NOT_FOUND', 'no such console page')} />));

  /** What every page's frame needs, for this request. */
  const frame = (reply: FastifyReply, request: FastifyRequest, extra: Partial<PageFrame> = {}): PageFrame => ({
    manifest,
    ...(request.consoleAdmin && { admin: request.consoleAdmin }),
    csrfToken: reply.generateCsrf(),
    ...extra,
  });

  await assetRoutes(app);

  app.get('/login', { config: { access: 'public' } }, async (request, reply) => html(reply, <LoginPage frame={frame(reply, request)} />));
  app.post<{ Body: { username: string; password: string } }>('/login', {
    config: { access: 'public' },
    schema: { body: { type: 'object', required: ['username', 'password'], properties: { username: { type: 'string', minLength: 1, maxLength: 64 }, password: { type: 'string', minLength: 1, maxLength: 256 }, _csrf: { type: 'string' } } } },
    handler: async (request, reply) => {
      const now = Date.now();
      try {
        const session = await services.accounts.login({ username: request.body.username, password: request.body.password, source: loginSource(request) }, CONSOLE_SESSION_LABEL, now);
        setSessionCookie(reply, session, now);
        return reply.redirect(session.mustChangePassword ? '/console/password' : '/console/', 303);
      } catch (error) {
        if (!(error instanceof CtOpsError) || (error.code !== 'ERR_LOGIN_FAILED' && error.code !== 'ERR_LOGIN_LOCKED')) throw error;
        // Answered with a page, not by the error handler: the audit hook still gets the code.
        request.answeredError = error.code;
        if (typeof error.details.retry_after_secs === 'number') reply.header('retry-after', String(error.details.retry_after_secs));
        return html(reply.code(error.httpStatus), <LoginPage frame={frame(reply, request)} error={error} username={request.body.username} />);
      }
    },
  });
  app.post('/logout', { config: { access: 'session' } }, async (request, reply) => {
    const admin = request.consoleAdmin!;
    await services.accounts.logout(admin);
    events.closeSession(admin.id);
    clearSessionCookies(reply);
    return reply.redirect('/console/login', 303);
  });
  app.get('/password', { config: { access: 'session' } }, async (request, reply) => html(reply, <PasswordPage frame={frame(reply, request)} />));
  app.post<{ Body: { current_password: string; new_password: string } }>('/password', {
    config: { access: 'session' },
    schema: { body: { type: 'object', required: ['current_password', 'new_password'], properties: { current_password: { type: 'string', maxLength: 256 }, new_password: { type: 'string', maxLength: 256 }, _csrf: { type: 'string' } } } },
    handler: async (request, reply) => {
      try {
        await services.accounts.changePassword(request.consoleAdmin!, { current: request.body.current_password, next: request.body.new_password, source: loginSource(request) }, Date.now());
        return reply.redirect('/console/', 303);
      } catch (error) {
        if (!(error instanceof CtOpsError) || !['ERR_LOGIN_FAILED', 'ERR_LOGIN_LOCKED', 'ERR_PASSWORD_REJECTED'].includes(error.code)) throw error;
        request.answeredError = error.code;
        return html(reply.code(error.httpStatus), <PasswordPage frame={frame(reply, request)} error={error} />);
      }
    },
  });

  const overview = async (): Promise<OverviewData> => {
    const counts = await services.hosts.statusCounts(orgId);
    const pending = await pendingHosts();
    const certificate = ctx.certs.serverCertificateNotAfter();
    const now = Date.now();
    const [failedTasks, failedUpdates] = await Promise.all([
      services.tasks.failedSince(orgId, now - 86_400_000, 100),
      ctx.stores.hostUpdates.recentIn(['failed', 'rolled_back'], now - 7 * 86_400_000, 100),
    ]);
    return {
      failedTasks,
      failedUpdates,
      counts: Object.fromEntries(HOST_STATUSES.map((status) => [status, counts.get(status) ?? 0])) as Record<HostStatus, number>,
      cloneWarnings: pending.filter((entry) => entry.existing).map((entry) => ({ id: entry.host.id, hostname: entry.host.hostname, conflictWith: entry.existing!.id })),
      certificate: { notAfter: certificate, soon: certificate - Date.now() < CERTIFICATE_WARNING_MS },
    };
  };
  app.get<{ Querystring: { fragment?: 'overview' } }>('/', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { fragment: { type: 'string', enum: ['overview'] } } } },
    handler: async (request, reply) => {
      const data = await overview();
      if (request.query.fragment) return html(reply, <OverviewBody data={data} />, false);
      return html(reply, <OverviewPage frame={frame(reply, request, { section: 'overview', live: true })} data={data} />);
    },
  });

  app.get<{ Querystring: HostListQuery & { page?: string; fragment?: 'table' } }>('/hosts', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          ...allowingEmpty(hostListQuery.properties),
          page: { type: 'string', pattern: '^[1-9][0-9]{0,6}$' },
          fragment: { type: 'string', enum: ['table'] },
        },
      },
    },
    handler: async (request, reply) => {
      const query = Object.fromEntries(Object.entries(request.query).filter(([, value]) => value !== '')) as HostListQuery & { page?: string; fragment?: 'table' };
      const sort = hostSort(query.sort ?? 'hostname');
      const page = Number(query.page ?? 1);
      const found = await services.hosts.page(orgId, hostFilter(query), sort, HOSTS_PAGE_SIZE, (page - 1) * HOSTS_PAGE_SIZE);
      const data: HostsData = {
        query: { ...(query.status && { status: query.status as HostStatus }), ...(query.os && { os: query.os }), ...(query.tag && { tag: query.tag }), ...(query.version && { version: query.version }), ...(query.q && { q: query.q }), sort: sort.key, descending: sort.descending, page },
        rows: found.hosts.map((host) => ({ host, status: statusOfHost(host, found.online.has(host.id)) })),
        total: found.total,
        pageSize: HOSTS_PAGE_SIZE,
      };
      if (query.fragment) return html(reply, <HostsTable data={data} />, false);
      return html(reply, <HostsPage frame={frame(reply, request, { section: 'hosts', live: true })} data={data} />);
    },
  });

  const pendingHosts = async (): Promise<PendingHost[]> => {
    const found = await services.hosts.page(orgId, { status: 'pending' }, { key: 'enrolled', descending: false }, PENDING_SHOWN, 0);
    const tokens = new Map((await services.enrolment.listTokens(orgId)).map((token) => [token.id, token]));
    return Promise.all(
      found.hosts.map(async (host) => ({
        host,
        token: host.enrolmentTokenId === null ? undefined : tokens.get(host.enrolmentTokenId),
        existing: host.fingerprintConflictWith === null ? undefined : await services.hosts.hostOfOrg(orgId, host.fingerprintConflictWith).catch(() => undefined),
      })),
    );
  };
  app.get<{ Querystring: { fragment?: 'list' } }>('/pending', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { fragment: { type: 'string', enum: ['list'] } } } },
    handler: async (request, reply) => {
      const pending = await pendingHosts();
      const pageFrame = frame(reply, request, { section: 'pending', live: true });
      if (request.query.fragment) return html(reply, <PendingList frame={pageFrame} pending={pending} />, false);
      return html(reply, <PendingPage frame={pageFrame} pending={pending} />);
    },
  });
  // Approve, reject, approve as the replacement of an existing host: HostService decides, as for the API.
  const decided = async (request: FastifyRequest, reply: FastifyReply, decide: () => Promise<unknown>) => {
    try {
      await decide();
      return reply.redirect('/console/pending', 303);
    } catch (error) {
      if (!(error instanceof CtOpsError) || error.httpStatus >= 500 || error.code === 'ERR_ADMIN_FORBIDDEN') throw error;
      request.answeredError = error.code;
      return html(reply.code(error.httpStatus), <PendingPage frame={frame(reply, request, { section: 'pending', live: true })} pending={await pendingHosts()} error={error} />);
    }
  };
  for (const decision of ['approve', 'reject'] as const) {
    app.post<{ Params: { id: string } }>(`/hosts/:id/${decision}`, {
      schema: { params: hostIdParams },
      handler: async (request, reply) => decided(request, reply, () => services.hosts.decide(orgId, request.params.id, decision, request.consoleAdmin!.username, Date.now())),
    });
  }
  app.post<{ Params: { id: string }; Body: { replaces: string } }>('/hosts/:id/approve-as-replacement', {
    schema: { params: hostIdParams, body: { type: 'object', required: ['replaces'], properties: { replaces: hostIdParams.properties.id, _csrf: { type: 'string' } } } },
    handler: async (request, reply) => decided(request, reply, () => services.hosts.approveAsReplacement(orgId, request.params.id, request.body.replaces, request.consoleAdmin!.username, Date.now(), false)),
  });

  const hostPageData = async (hostId: string, showRemoved: boolean, packagesPage: number): Promise<HostPageData> => {
    const host = await services.hosts.hostOfOrg(orgId, hostId, { includeDeleted: true });
    const [online, update, recentVitals, packages, scans, tasks, previousNames, pendingUninstall] = await Promise.all([
      services.presence.isOnline(host.id),
      ctx.stores.hostUpdates.get(host.id),
      ctx.stores.vitals.recent(host.id, 20),
      services.inventory.packages(host.id, { liveOnly: !showRemoved, page: { limit: HOST_PACKAGES_PAGE, offset: (packagesPage - 1) * HOST_PACKAGES_PAGE } }),
      services.inventory.scans(host.id, 10),
      services.tasks.list(orgId, { hostId: host.id, limit: HOST_CHANGE_TASKS }),
      ctx.stores.hostEvents.ofKind(host.id, 'renamed', 20, host.replaces),
      services.tasks.unfinished(host.id, 'agent_uninstall'),
    ]);
    return { host, status: statusOfHost(host, online), update, recentVitals, packages, showRemoved, packagesPage, scans, tasks, previousNames, pendingUninstall };
  };
  app.get<{ Params: { id: string }; Querystring: { removed?: '0' | '1'; page?: string; fragment?: 'summary' | 'activity' } }>('/hosts/:id', {
    schema: {
      params: hostIdParams,
      querystring: { type: 'object', additionalProperties: false, properties: { removed: { type: 'string', enum: ['0', '1'] }, page: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' }, fragment: { type: 'string', enum: ['summary', 'activity'] } } },
    },
    handler: async (request, reply) => {
      const data = await hostPageData(request.params.id, request.query.removed === '1', Number(request.query.page ?? 1));
      if (request.query.fragment === 'summary') return html(reply, <HostSummary data={data} />, false);
      if (request.query.fragment === 'activity') return html(reply, <HostActivity data={data} />, false);
      return html(reply, <HostPage frame={frame(reply, request, { section: 'hosts', live: true })} data={data} />);
    },
  });
  // The chart's data: 24 hours in about 300 buckets, as columns (uPlot's shape).
  app.get<{ Params: { id: string } }>('/hosts/:id/vitals', {
    schema: { params: hostIdParams },
    handler: async (request) => {
      const host = await services.hosts.hostOfOrg(orgId, request.params.id, { includeDeleted: true });
      const until = Date.now();
      return ctx.stores.vitals.series(host.id, until - VITALS_WINDOW_MS, until, VITALS_WINDOW_MS / VITALS_POINTS);
    },
  });
  // A rescan asked in the console: queued, and sent at once when the agent is online (TaskService, as the API's).
  app.post<{ Params: { id: string } }>('/hosts/:id/rescan', {
    schema: { params: hostIdParams },
    handler: async (request, reply) => {
      await services.tasks.create(orgId, { type: 'software_inventory', hostId: request.params.id, by: request.consoleAdmin!.username });
      return reply.redirect(`/console/hosts/${request.params.id}#software`, 303);
    },
  });
  app.post<{ Params: { id: string }; Body: { uninstall?: 'true' } }>('/hosts/:id/delete', {
    schema: { params: hostIdParams, body: { type: 'object', properties: { uninstall: { type: 'string', enum: ['true'] }, _csrf: { type: 'string' } } } },
    handler: async (request, reply) => {
      await services.hosts.delete(orgId, request.params.id, { uninstall: request.body.uninstall === 'true' }, request.consoleAdmin!.username, Date.now());
      return reply.redirect(`/console/hosts/${request.params.id}`, 303);
    },
  });

  const tokenRows = async (): Promise<TokenRow[]> => {
    const now = Date.now();
    const tokens = await services.enrolment.listTokens(orgId);
    const lastUse = await services.hosts.lastEnrolledWith(orgId, tokens.map((token) => token.id));
    return tokens.map((token) => ({ token, state: tokenState(token, now), lastUse: lastUse.get(token.id) }));
  };
  app.get('/tokens', async (request, reply) => html(reply, <TokensPage frame={frame(reply, request, { section: 'tokens' })} rows={await tokenRows()} />));
  app.post<{ Body: { label?: string; expires_in_days: string; max_uses: string; tags?: string; auto_approve?: 'true' } }>('/tokens', {
    schema: {
      body: {
        type: 'object',
        required: ['expires_in_days', 'max_uses'],
        properties: {
          label: { type: 'string', maxLength: 128 },
          expires_in_days: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' },
          max_uses: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' },
          tags: { type: 'string', maxLength: 2000 },
          auto_approve: { type: 'string', enum: ['true'] },
          _csrf: { type: 'string' },
        },
      },
    },
    handler: async (request, reply) => {
      const body = request.body;
      const pageFrame = frame(reply, request, { section: 'tokens' });
      try {
        const created = await services.enrolment.issueToken(
          orgId,
          {
            label: body.label ?? '',
            expiresInMs: Math.min(Number(body.expires_in_days), 366) * 86_400_000,
            maxUses: Number(body.max_uses),
            autoApprove: body.auto_approve === 'true',
            tags: parseTagList(body.tags ?? ''),
            createdBy: request.consoleAdmin!.username,
            source: 'admin',
            metadata: {},
          },
          Date.now(),
        );
        return html(reply.code(201), <TokensPage frame={pageFrame} rows={await tokenRows()} created={{ id: created.token.id, secret: created.secret }} />);
      } catch (error) {
        if (!(error instanceof CtOpsError) || error.httpStatus >= 500) throw error;
        request.answeredError = error.code;
        return html(reply.code(error.httpStatus), <TokensPage frame={pageFrame} rows={await tokenRows()} error={error} />);
      }
    },
  });
  app.post<{ Params: { id: string } }>('/tokens/:id/revoke', {
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('etk') } } } },
    handler: async (request, reply) => {
      await services.enrolment.revokeToken(orgId, request.params.id, request.consoleAdmin!.username, Date.now());
      return reply.redirect('/console/tokens', 303);
    },
  });

  // The bundles on record with the hosts enrolled from each (BundleService, as GET /api/v1/bundles).
  const bundlePage = () => services.bundles.list({ limit: BUNDLES_SHOWN, offset: 0 });
  app.get('/bundles', async (request, reply) => html(reply, <BundlesPage frame={frame(reply, request, { section: 'bundles' })} page={await bundlePage()} defaults={{ address: '' }} />));
  app.post<{ Body: { os: string; arch: string; address: string; token: 'new' | 'existing' | 'none'; token_id?: string; token_secret?: string; tags?: string; label?: string } }>('/bundles', {
    schema: {
      body: {
        type: 'object',
        required: ['os', 'arch', 'address', 'token'],
        properties: {
          os: { type: 'string', maxLength: 16 },
          arch: { type: 'string', maxLength: 16 },
          address: { type: 'string', minLength: 1, maxLength: 2000 },
          token: { type: 'string', enum: ['new', 'existing', 'none'] },
          // An existing token is named by its id and proven by its secret (the appliance keeps only its hash).
          token_id: { type: 'string', maxLength: 64 },
          token_secret: { type: 'string', maxLength: 256 },
          tags: { type: 'string', maxLength: 2000 },
          label: { type: 'string', maxLength: 128 },
          _csrf: { type: 'string' },
        },
      },
    },
    handler: async (request, reply) => {
      const body = request.body;
      const by = request.consoleAdmin!.username;
      const addresses = body.address.split(',').map((address) => address.trim()).filter(Boolean);
      const render = async (extra: { built?: BuiltBundle; error?: CtOpsError }) =>
        html(reply, <BundlesPage frame={frame(reply, request, { section: 'bundles' })} page={await bundlePage()} defaults={{ address: body.address }} {...extra} />);
      try {
        const token = body.token === 'existing' ? { mode: body.token, id: (body.token_id ?? '').trim(), secret: body.token_secret ?? '' } : { mode: body.token };
        const bundleRequest = parseBundleRequest({ os: body.os, arch: body.arch, address: addresses.length === 1 ? addresses[0]! : addresses, tags: parseTagList(body.tags ?? ''), label: body.label ?? '', token, createdBy: by });
        const built = await services.bundles.build(bundleRequest, { by });
        reply.code(201);
        return render({ built });
      } catch (error) {
        if (!(error instanceof CtOpsError) || error.httpStatus >= 500) throw error;
        request.answeredError = error.code;
        reply.code(error.httpStatus);
        return render({ error });
      }
    },
  });
  app.get<{ Params: { id: string } }>('/bundles/:id/download', {
    // The zip holds an enrolment token: a secret, which a viewer may not take (as GET /api/v1/bundles/:id).
    config: { access: 'write' },
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('bnd') } } } },
    handler: async (request, reply) => {
      const { file, path } = await services.bundles.zip(request.params.id, request.consoleAdmin!.username);
      return reply.header('content-type', 'application/zip').header('content-disposition', `attachment; filename="${file}"`).send(createReadStream(path));
    },
  });

  const softwareQuery = {
    type: 'object',
    additionalProperties: false,
    properties: {
      name: { type: 'string', maxLength: 256 },
      min_version: { type: 'string', maxLength: 256 },
      max_version: { type: 'string', maxLength: 256 },
      include_removed: { type: 'string', enum: ['1'] },
      page: { type: 'string', pattern: '^[1-9][0-9]{0,5}$' },
    },
  } as const;
  const findSoftware = (query: SoftwareQuery) =>
    services.inventory.search(orgId, { name: query.name!, ...(query.min_version && { minVersion: query.min_version }), ...(query.max_version && { maxVersion: query.max_version }), includeRemoved: query.include_removed === '1' });
  app.get<{ Querystring: SoftwareQuery }>('/software', {
    schema: { querystring: softwareQuery },
    handler: async (request, reply) => {
      const rows = request.query.name ? await findSoftware(request.query) : undefined;
      return html(reply, <SoftwarePage frame={frame(reply, request, { section: 'software' })} query={request.query} rows={rows} />);
    },
  });
  // The same search as CSV (RFC 4180, csv-stringify); a cell that a spreadsheet would run as a formula is defused.
  app.get<{ Querystring: SoftwareQuery }>('/software.csv', {
    schema: { querystring: { ...softwareQuery, required: ['name'] } },
    handler: async (request, reply) => {
      const rows = await findSoftware(request.query);
      const records = rows.map((row) => [row.hostId, row.hostname, row.name, row.version, row.architecture, row.source, iso(row.firstSeen), row.isRemoved ? iso(row.removedAt) : '']);
      const csv = stringify([['host_id', 'hostname', 'name', 'version', 'architecture', 'source', 'first_seen', 'removed_at'], ...records], { cast: { string: defuseFormula } });
      return reply.header('content-type', 'text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="software.csv"').send(csv);
    },
  });

  app.get('/releases', async (request, reply) => {
    const [releases, minimum, status] = await Promise.all([services.releases.list(), services.rollouts.minimum(), services.rollouts.status(Date.now())]);
    return html(reply, <ReleasesPage frame={frame(reply, request, { section: 'releases' })} releases={releases} minimum={minimum} status={status} />);
  });
  for (const action of ['pause', 'resume'] as const) {
    app.post(`/rollouts/current/${action}`, async (_request, reply) => {
      await services.rollouts[action](Date.now());
      return reply.redirect('/console/releases', 303);
    });
  }

  // The audit log is for admins (as GET /api/v1/audit): it shows sources and the usernames failed logins tried.
  const auditQuerySchema = { type: 'object', additionalProperties: false, properties: allowingEmpty(auditFilterProperties) } as const;
  const auditQueryOf = (query: AuditPageQuery): AuditQuery => Object.fromEntries(Object.entries(query).filter(([, value]) => value !== '')) as AuditQuery;
  app.get<{ Querystring: AuditPageQuery }>('/audit', {
    config: { access: 'write' },
    schema: { querystring: auditQuerySchema },
    handler: async (request, reply) => {
      const page = await services.audit.list(orgId, auditFilter(auditQueryOf(request.query)), AUDIT_PAGE_SIZE);
      return html(reply, <AuditPage frame={frame(reply, request, { section: 'audit' })} query={request.query} events={page.events} nextBeforeId={page.nextBeforeId} />);
    },
  });
  app.get<{ Querystring: AuditPageQuery }>('/audit.jsonl', {
    config: { access: 'write' },
    schema: { querystring: auditQuerySchema },
    handler: async (request, reply) => {
      return reply
        .type('application/x-ndjson; charset=utf-8')
        .header('content-disposition', 'attachment; filename="audit.jsonl"')
        .send(auditJsonLines(services.audit.export(orgId, auditFilter(auditQueryOf(request.query)))));
    },
  });

  // Your own API tokens: any role may make them (a viewer's stay read-only by role); 'read' access:
  // a one-time password must be changed first, and no fleet state changes.
  const apiTokensPage = async (request: FastifyRequest, reply: FastifyReply, created?: { id: string; secret: string }) =>
    html(reply, <ApiTokensPage frame={frame(reply, request, { section: 'api-tokens' })} tokens={await services.accounts.apiTokensOf(request.consoleAdmin!, Date.now())} {...(created && { created })} />);
  app.get('/api-tokens', async (request, reply) => apiTokensPage(request, reply));
  app.post<{ Body: { description: string; scope: TokenScope; days: string } }>('/api-tokens', {
    config: { access: 'read' },
    schema: {
      body: {
        type: 'object',
        required: ['description', 'scope', 'days'],
        properties: { description: { type: 'string', minLength: 1, maxLength: 128 }, scope: { type: 'string', enum: [...TOKEN_SCOPES] }, days: { type: 'string', pattern: '^[1-9][0-9]{0,2}$' }, _csrf: { type: 'string' } },
      },
    },
    handler: async (request, reply) => {
      const made = await services.accounts.createApiToken(request.consoleAdmin!, { description: request.body.description, scope: request.body.scope, days: Number(request.body.days) }, Date.now());
      return apiTokensPage(request, reply.code(201), made);
    },
  });
  app.post<{ Params: { id: string } }>('/api-tokens/:id/revoke', {
    config: { access: 'read' },
    schema: { params: { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('akey') } } } },
    handler: async (request, reply) => {
      await services.accounts.revokeApiToken(request.consoleAdmin!, request.params.id);
      return reply.redirect('/console/api-tokens', 303);
    },
  });

  app.get('/api', async (request, reply) => html(reply, <ApiDocsPage frame={frame(reply, request, { section: 'api' })} document={app.swagger() as unknown as OpenApiDocument} />));

  // `host`: the host page's stream also tells when that host changed (its heartbeats, tasks, scans).
  app.get<{ Querystring: { host?: string } }>('/events', {
    schema: { querystring: { type: 'object', additionalProperties: false, properties: { host: { type: 'string', pattern: idPatternSource('hst') } } } },
    handler: async (request, reply) => events.open(reply, request.consoleAdmin!.id, request.query.host),
  });

  app.post('/csp-report', {
    config: { access: 'public' },
    schema: {},
    // Counted per source so that a page cannot flood the log.
    handler: async (request, reply) => {
      const logged = await cspReports.consume(loginSource(request)).then(
        () => true,
        () => false,
      );
      if (logged) request.log.warn({ report: request.body, source: loginSource(request) }, 'console CSP violation reported');
      return reply.code(204).send();
    },
  });
}

/** Query properties that also take '' (an empty field of a filter form, meaning "any"). */
function allowingEmpty(properties: Readonly<Record<string, object>>): Record<string, object> {
  return Object.fromEntries(Object.entries(properties).map(([name, schema]) => [name, { anyOf: [schema, { const: '' }] }]));
}

/**
 * Tags typed into a form: `key=value` (or a bare `key`) separated by commas, as the CLI's --tag takes
 * them one by one. The services check names and lengths (ERR_INVALID_ARGUMENT).
 */
function parseTagList(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const item of text.split(',').map((part) => part.trim()).filter(Boolean)) {
    const equals = item.indexOf('=');
    if (equals < 0) tags[item] = '';
    else tags[item.slice(0, equals).trim()] = item.slice(equals + 1).trim();
  }
  return tags;
}

/**
 * A CSV cell that begins with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
 * spreadsheet programs (OWASP, CSV injection): it gets a leading apostrophe, which they show as text.
 * Package names and versions come from agents.
 */
export function defuseFormula(value: string): string {
  return /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
}

/** Sends a rendered page (a whole document) or fragment (htmx swaps it in). */
function html(reply: FastifyReply, node: VNode, document = true): FastifyReply {
  return reply.type('text/html; charset=utf-8').send(`${document ? '<!doctype html>\n' : ''}${renderToString(node)}`);
}
