// Builds the admin console's browser assets into <outDir> (dist/console): the one script
// (console/client/main.ts with htmx inside) and the stylesheet, each named by its content hash so
// they can be cached for good, and manifest.json mapping each logical name to its file. The appliance
// serves them from its own origin (appliance/console/assets.ts): nothing comes from a CDN.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import * as esbuild from 'esbuild';

/** Builds the console assets; returns the manifest ({ 'main.js': 'main-<hash>.js', … }). */
export async function buildConsoleAssets({ root, outDir }) {
  mkdirSync(outDir, { recursive: true });
  const result = await esbuild.build({
    entryPoints: { main: join(root, 'console/client/main.ts'), console: join(root, 'console/client/console.css') },
    outdir: outDir,
    entryNames: '[name]-[hash]',
    // Code only some pages need (charts) is a chunk main.js imports when it is needed.
    splitting: true,
    chunkNames: 'chunk-[hash]',
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    tsconfig: join(root, 'console/tsconfig.json'),
    minify: true,
    legalComments: 'linked',
    metafile: true,
    logLevel: 'warning',
  });
  const manifest = {};
  for (const [output, meta] of Object.entries(result.metafile.outputs)) {
    if (!meta.entryPoint) continue;
    const file = basename(output);
    const logical = file.replace(/-[A-Z0-9]+(\.\w+)$/, '$1');
    manifest[logical] = file;
  }
  writeFileSync(join(outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  // Earlier builds' files carry other hashes: keep only what this build wrote.
  const written = new Set([...Object.keys(result.metafile.outputs).map((path) => relative(outDir, join(root, path))), 'manifest.json']);
  for (const name of readdirSync(outDir)) if (!written.has(name)) rmSync(join(outDir, name), { recursive: true, force: true });
  return manifest;
}
