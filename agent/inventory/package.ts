/**
 * One installed package, shaped like the ingest proto's SoftwarePackage so the transport
 * can send it as is. Unknown text fields are '' and an unknown install date is 0.
 */
export interface SoftwarePackage {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
  readonly publisher: string;
  /** The collector that reported it: "dpkg", "rpm", "pacman", "apk", "system_profiler", ... */
  readonly source: string;
  /** Seconds since the epoch; 0 when the source does not record when it was installed. */
  readonly install_date_unix: number;
}

export function softwarePackage(fields: Partial<SoftwarePackage> & Pick<SoftwarePackage, 'name' | 'version' | 'source'>): SoftwarePackage {
  return { architecture: '', publisher: '', install_date_unix: 0, ...fields };
}
