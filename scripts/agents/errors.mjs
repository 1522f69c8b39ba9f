// The closed set of failures of `npm run build:agents`, each with its exit code
// (sysexits(3), as the product's CLIs use them).

export const BUILD_AGENTS_ERRORS = Object.freeze({
  ERR_USAGE: { exit: 64, summary: 'Unknown option or target.' },
  ERR_BUNDLE_MISSING: { exit: 66, summary: 'dist/ct-ops-agent.cjs is missing (run `npm run build`).' },
  ERR_BUNDLE_NOT_SELF_CONTAINED: { exit: 65, summary: 'The agent bundle requires a file on disk, which a single executable cannot load.' },
  ERR_BASE_NOT_PINNED: { exit: 65, summary: 'A base binary package has no exact version and integrity in scripts/agents/node-base/package-lock.json.' },
  ERR_BASE_BINARY_MISSING: { exit: 69, summary: 'A base binary tarball cannot be fetched with npm pack, or does not hold the node binary.' },
  ERR_BASE_INTEGRITY_MISMATCH: { exit: 65, summary: "A base binary tarball's sha512 differs from the integrity pinned in the lock file." },
  ERR_TOOL_MISSING: { exit: 69, summary: 'A required tool (tar, llvm-strip, llvm-objcopy ≥ 13) is not installed.' },
  ERR_TOOL_FAILED: { exit: 70, summary: 'A build step (SEA blob, strip, postject, llvm-objcopy) failed.' },
  ERR_SIGNATURE_CHECK_FAILED: { exit: 70, summary: 'A darwin executable did not carry a valid ad-hoc code signature after signing.' },
  ERR_RELEASE_KEY_INVALID: { exit: 78, summary: 'CT_OPS_RELEASE_KEY does not name a readable PKCS#8 Ed25519 private key.' },
});

/**
 * An error of a build tool with a code from the tool's closed catalogue ({ CODE: { exit,
 * summary } }, the subclass's static `catalogue`) and that code's exit code.
 */
export class CatalogueError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {{ cause?: unknown, detail?: string }} [options]
   */
  constructor(code, message, options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.detail = options.detail;
  }

  get exitCode() {
    return this.constructor.catalogue[this.code].exit;
  }
}

export class BuildAgentsError extends CatalogueError {
  static catalogue = BUILD_AGENTS_ERRORS;
}
