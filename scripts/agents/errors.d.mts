export declare const BUILD_AGENTS_ERRORS: Readonly<Record<string, { readonly exit: number; readonly summary: string }>>;
export declare class BuildAgentsError extends Error {
  constructor(code: string, message: string, options?: { cause?: unknown; detail?: string });
  readonly code: string;
  readonly detail: string | undefined;
  get exitCode(): number;
}
