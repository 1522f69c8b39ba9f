/**
 * The audit log's name for what a request did, derived from its method and route pattern (never the
 * raw URL, so a host id or a typo cannot make a new action):
 *
 * 1. The prefix goes (`/api/v1/`, `/console/`); the console's account pages, which live at its root,
 *    are named as the API routes they mirror (`/console/login` as `/auth/login`), so one action
 *    covers both ways in; the console's root is its `overview`.
 * 2. Parameters go, the static segments are joined with dots: `/hosts/:id/approve` → `hosts.approve`.
 * 3. A POST ending in a static segment after another names its verb there (`hosts.approve`,
 *    `auth.login`, `certs.rotate-ca`, `rollouts.current.pause`). Any other request gets a verb from its
 *    method: POST to a collection `create` (`tokens.create`), PUT and PATCH `update`
 *    (`releases.minimum.update`), DELETE `delete` (`hosts.delete`, also the console's
 *    POST /hosts/:id/delete), GET `read` (`bundles.read`: a zip with a token inside, `audit.read`).
 */

const PREFIXES = ['/api/v1/', '/console/'] as const;

/** The console's pages at its root, named after what they are: its overview, and the account pages after the API routes they mirror. */
const CONSOLE_ROOT_PAGES: Readonly<Record<string, string>> = {
  '/console': 'overview',
  '/console/login': 'auth/login',
  '/console/logout': 'auth/logout',
  '/console/password': 'auth/password',
};

const METHOD_VERBS: Readonly<Record<string, string>> = { GET: 'read', HEAD: 'read', POST: 'create', PUT: 'update', PATCH: 'update', DELETE: 'delete' };

/** The action of `method` on the route `pattern` (request.routeOptions.url); undefined outside the admin API and the console. */
export function auditAction(method: string, pattern: string): string | undefined {
  const rootPage = CONSOLE_ROOT_PAGES[pattern];
  const prefix = PREFIXES.find((candidate) => pattern.startsWith(candidate));
  if (rootPage === undefined && prefix === undefined) return undefined;
  const path = rootPage ?? pattern.slice(prefix!.length);
  const segments = path.split('/').filter((segment) => segment !== '');
  const names = segments.filter((segment) => !segment.startsWith(':'));
  if (names.length === 0) return undefined;
  const last = segments.at(-1)!;
  const verbInPath = method === 'POST' && !last.startsWith(':') && segments.length > 1;
  return verbInPath ? names.join('.') : [...names, METHOD_VERBS[method] ?? method.toLowerCase()].join('.');
}
