import { CtOpsError } from '../../common/errors.ts';

/**
 * The first place in `value` (a parsed JSON body, a query or route parameters) where a string or an
 * object key holds U+0000, as a dotted path under `root` (`body.tags.site`), or undefined. Iterative:
 * a deeply nested body (1 MiB of `[`) walks without growing the stack. Only what JSON.parse makes is
 * walked (arrays, plain objects): a body a route reads as a stream (a release archive) is not data
 * to look into, and walking its object graph would never end (it has cycles).
 */
export function nulCharacterAt(value: unknown, root: string): string | undefined {
  const pending: Array<[unknown, string]> = [[value, root]];
  while (pending.length > 0) {
    const [item, path] = pending.pop()!;
    if (typeof item === 'string') {
      if (item.includes('\u0000')) return path;
    } else if (isJsonContainer(item)) {
      for (const [key, child] of Object.entries(item)) {
        if (key.includes('\u0000')) return path;
        pending.push([child, `${path}.${key}`]);
      }
    }
  }
  return undefined;
}

function isJsonContainer(value: unknown): value is object {
  if (typeof value !== 'object' || value === null) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return Array.isArray(value) || prototype === Object.prototype || prototype === null;
}

/**
 * Refuses a request whose body, query or parameters carry a NUL character anywhere, with
 * ERR_INVALID_ARGUMENT naming the field: PostgreSQL's TEXT cannot hold U+0000 (SQLSTATE 22021, which
 * was a 500), and SQLite would store text that C tools then cut short; refused at the edge, both
 * backends answer alike. A fastify preValidation hook, before any route's schema or handler.
 */
export async function refuseNulCharacters(request: { body?: unknown; query?: unknown; params?: unknown }): Promise<void> {
  for (const [part, value] of [['body', request.body], ['querystring', request.query], ['params', request.params]] as const) {
    const field = nulCharacterAt(value, part);
    if (field !== undefined) throw new CtOpsError('ERR_INVALID_ARGUMENT', `${field} holds a NUL character (U+0000), which no field takes`, { field });
  }
}
