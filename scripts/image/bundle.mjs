// The appliance and ct-ops-bundle as esbuild bundles WITH their npm packages inside:
// an image has no node_modules. The one native part, better-sqlite3's addon, is a
// separate file (dist/better_sqlite3.node) that appliance/store/database.ts hands to
// better-sqlite3 as nativeBinding.
import { join } from 'node:path';
import * as esbuild from 'esbuild';
import { BuildImageError } from './errors.mjs';

/**
 * Bundled CommonJS packages call require() (built-ins, and better-sqlite3 its addon),
 * which an ES module does not have: each output file (chunks too) gets its own. The
 * development build (scripts/build.mjs) uses it too.
 */
export const REQUIRE_BANNER = "import { createRequire as __ctOpsCreateRequire } from 'node:module';\nconst require = __ctOpsCreateRequire(import.meta.url);";

/**
 * Writes dist/ct-ops-appliance.js, dist/ct-ops-bundle.js, dist/wal-checkpoint-worker.js and dist/chunks/* into topDir.
 * Code splitting stays, as in scripts/build.mjs: an admin command does not load the
 * server.
 * @param {{ root: string, topDir: string, version: string, nodeVersion: string }} options
 */
export async function bundleForImage({ root, topDir, version, nodeVersion }) {
  try {
    await esbuild.build({
      entryPoints: {
        'ct-ops-appliance': join(root, 'appliance/main.ts'),
        'ct-ops-bundle': join(root, 'bundler/main.ts'),
        // The appliance's WAL checkpoint thread (appliance/store/wal-checkpointer.ts starts it from here).
        'wal-checkpoint-worker': join(root, 'appliance/store/wal-checkpoint-worker.ts'),
      },
      absWorkingDir: root,
      outdir: join(topDir, 'dist'),
      chunkNames: 'chunks/[name]-[hash]',
      bundle: true,
      splitting: true,
      format: 'esm',
      platform: 'node',
      target: `node${nodeVersion.split('.')[0]}`,
      banner: { js: REQUIRE_BANNER },
      define: { __CT_OPS_VERSION__: JSON.stringify(version) },
      logLevel: 'silent',
    });
  } catch (error) {
    throw new BuildImageError('ERR_TOOL_FAILED', `esbuild could not bundle the appliance with its packages: ${error.message}`, { cause: error });
  }
}
