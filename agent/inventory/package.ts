import { replaceUnsafeText } from '../../common/agent-text.ts';

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

/**
 * A package from a parser's fields. Text fields pass through replaceUnsafeText: a package database
 * may hold control or bidi characters (a hostile or broken package), which the appliance refuses,
 * and one such name must not cost the whole scan.
 */
export function softwarePackage(fields: Partial<SoftwarePackage> & Pick<SoftwarePackage, 'name' | 'version' | 'source'>): SoftwarePackage {
  const { name, version, source, architecture = '', publisher = '', install_date_unix = 0 } = fields;
  return {
    name: replaceUnsafeText(name),
    version: replaceUnsafeText(version),
    source,
    architecture: replaceUnsafeText(architecture),
    publisher: replaceUnsafeText(publisher),
    install_date_unix,
  };
}
