import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import send from '@fastify/send';
import type { FastifyInstance } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';
import { packageRoot } from '../../common/package-root.ts';

/** The built assets' folder: dist/console of the package (a clone after `npm run build`, or the image). */
export const ASSETS_DIR = join(packageRoot(), 'dist/console');
const ASSET_NAME = /^[A-Za-z0-9_-]+\.(js|css|txt)$/;
const CONTENT_TYPES: Record<string, string> = { js: 'text/javascript; charset=utf-8', css: 'text/css; charset=utf-8', txt: 'text/plain; charset=utf-8' };

/** The logical names of the built assets ('main.js', 'console.css') → their hashed file names (scripts/console-assets.mjs). */
export type AssetManifest = Readonly<Record<string, string>>;

/**
 * Reads dist/console/manifest.json; undefined when the console was not built (`npm run build` builds
 * it; the image carries it): the appliance then serves agents and the API, and the console says why
 * it cannot open (consoleRoutes).
 */
export function readAssetManifest(dir: string = ASSETS_DIR): AssetManifest | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as AssetManifest;
  } catch {
    return undefined;
  }
}

/** The URL of a built asset by its logical name. */
export function assetUrl(manifest: AssetManifest, logical: string): string {
  const file = manifest[logical];
  if (!file) throw new CtOpsError('ERR_INTERNAL', `no console asset ${logical}`);
  return `/console/assets/${file}`;
}

/**
 * GET /console/assets/:file: the built files, each named by its content hash, so a browser may keep
 * them for a year without asking again (immutable). No session needed: they hold no data.
 */
export async function assetRoutes(app: FastifyInstance, dir: string = ASSETS_DIR): Promise<void> {
  app.get<{ Params: { file: string } }>('/assets/:file', {
    config: { access: 'public' },
    schema: { params: { type: 'object', required: ['file'], properties: { file: { type: 'string', pattern: ASSET_NAME.source } } } },
    handler: async (request, reply) => {
      const sent = await send(request.raw, `/${request.params.file}`, { root: dir, dotfiles: 'deny', index: false, cacheControl: false, contentType: false });
      if (sent.type !== 'file') throw new CtOpsError('ERR_NOT_FOUND', 'no such console asset');
      const extension = request.params.file.slice(request.params.file.lastIndexOf('.') + 1);
      return reply
        .code(sent.statusCode)
        .headers({ ...sent.headers, 'content-type': CONTENT_TYPES[extension], 'cache-control': 'public, max-age=31536000, immutable' })
        .send(sent.stream);
    },
  });
}
