/** The pinned version and sha512 integrity of a base package, from scripts/agents/node-base/package-lock.json. */
export declare function pinnedBase(packageName: string): { name: string; version: string; integrity: string };
/** The verified tarball of a pinned base package in cacheDir, fetched with npm pack when absent. */
export declare function verifiedBaseTarball(base: { name: string; version: string; integrity: string }, cacheDir: string): Promise<string>;
/** Extracts one member (a file, or a folder such as package) of a verified tarball into dir and returns its path. */
export declare function extractBaseBinary(tarball: string, memberPath: string, dir: string): Promise<string>;
