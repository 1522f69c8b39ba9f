// The closed set of failures of `npm run build:image`, each with its exit code
// (sysexits(3), as scripts/agents/errors.mjs and the product's CLIs use them). The steps
// it shares with build-agents (pinned base tarballs, the release key) fail with the
// BuildAgentsError codes of scripts/agents/errors.mjs, printed the same way.
import { CatalogueError } from '../agents/errors.mjs';

export const BUILD_IMAGE_ERRORS = Object.freeze({
  ERR_USAGE: { exit: 64, summary: 'Unknown option or target.' },
  ERR_AGENT_RELEASE_INVALID: { exit: 65, summary: 'dist/agents/<version>/ lacks a target or WinSW, or its SHA256SUMS does not match or does not verify with the release key, even after building it again.' },
  ERR_TOOL_MISSING: { exit: 69, summary: 'A required tool (the node-gyp npm ships, g++ or aarch64-linux-gnu-g++, qemu-aarch64, objdump; readelf, dpkg-query for the OCI archive) is not installed.' },
  ERR_TOOL_FAILED: { exit: 70, summary: 'A build step (esbuild, node-gyp, build-agents) failed.' },
  ERR_ADDON_DOES_NOT_LOAD: { exit: 70, summary: 'The better-sqlite3 addon built for the image does not open a database under the bundled Node.' },
  ERR_RUNTIME_LIBRARY_MISSING: { exit: 69, summary: "A shared object the bundled Node or addon needs (glibc, libstdc++, libgcc_s), or its Debian package's copyright file, is not on the builder for the OCI image's C runtime (arm64: apt-get install g++-aarch64-linux-gnu)." },
  ERR_IMAGE_CHECK_FAILED: { exit: 70, summary: 'The staged image does not run: `--version` under the bundled Node failed or printed another version.' },
});

export class BuildImageError extends CatalogueError {
  static catalogue = BUILD_IMAGE_ERRORS;
}
