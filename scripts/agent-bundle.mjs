// The agent as one self-contained CommonJS file: the input of the single executable builds
// (scripts/build-agents.mjs), which load built-in modules only through require. Shared by
// scripts/build.mjs (dist/ct-ops-agent.cjs) and build-agents --release-version (a bundle of
// another version in its work folder).
import { join } from 'node:path';
import * as esbuild from 'esbuild';

/** esbuild's options every bundle of this repository shares; `version` is what PRODUCT_VERSION reads (common/version.ts). */
export function commonBundleOptions(version) {
  return {
    bundle: true,
    platform: 'node',
    target: 'node20',
    sourcemap: 'linked',
    logLevel: 'warning',
    define: { __CT_OPS_VERSION__: JSON.stringify(version) },
  };
}

/** Bundles agent/main.ts of the repository at `root` into `outfile`, reporting `version`. */
export function bundleAgent({ root, outfile, version }) {
  return esbuild.build({
    ...commonBundleOptions(version),
    entryPoints: [join(root, 'agent/main.ts')],
    outfile,
    format: 'cjs',
    banner: { js: '#!/usr/bin/env node' },
  });
}
