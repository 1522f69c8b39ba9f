export declare const BUILD_AGENTS_ERRORS: Readonly<Record<string, { readonly exit: number; readonly summary: string }>>;
/** An error of a build tool with a code from its closed catalogue and that code's exit code. */
export declare class CatalogueError extends Error {
  constructor(code: string, message: string, options?: { cause?: unknown; detail?: string });
  readonly code: string;
  readonly detail: string | undefined;
  get exitCode(): number;
}
export declare class BuildAgentsError extends CatalogueError {}
