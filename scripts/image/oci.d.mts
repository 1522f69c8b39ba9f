/** The account the appliance runs as in the container. */
export declare const IMAGE_USER: Readonly<{ name: string; uid: number; gid: number }>;
/** The repository name docker and podman give the loaded image (tag: the version). */
export declare const IMAGE_NAME: string;

/** Writes the OCI image archive of one staged image (scripts/image/oci.mjs). */
export declare function writeOciArchive(options: {
  outFile: string;
  arch: 'x64' | 'arm64';
  version: string;
  stagingDir: string;
  topName: string;
  /** The top folder and everything in it, paths relative to stagingDir (<topName>/…), in tar order. */
  entries: readonly { path: string; type: 'file' | 'directory'; mode: number }[];
  /** SOURCE_DATE_EPOCH: the time of every entry and the image's `created`. */
  mtime: Date;
}): Promise<{ file: string; size: number; manifestDigest: string; reference: string; runtimePackages: string }>;
