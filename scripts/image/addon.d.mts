/** better_sqlite3.node for arch, built against nodeDir (an extracted node-linux-<arch> package) unless cached in cacheDir. */
export declare function betterSqliteAddon(options: { root: string; arch: 'x64' | 'arm64'; nodeVersion: string; nodeDir: string; cacheDir: string; step: (what: string) => void }): Promise<string>;
/** Opens an in-memory database with the addon under node (arm64: under qemu-aarch64); returns SQLite's version. Throws ERR_ADDON_DOES_NOT_LOAD. */
export declare function checkAddonLoads(options: { root: string; arch: 'x64' | 'arm64'; node: string; addon: string }): Promise<string>;
