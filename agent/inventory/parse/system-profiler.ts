import { unparsable } from '../errors.ts';
import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { jsonText, withoutBom } from './text.ts';

const ARCHITECTURES: Readonly<Record<string, string>> = {
  arch_arm_i64: 'universal',
  arch_i32_i64: 'universal',
  arch_arm: 'arm64',
  arch_i64: 'x86_64',
  arch_i32: 'i386',
  arch_ios: 'arm64',
};

interface Application {
  readonly _name?: unknown;
  readonly version?: unknown;
  readonly arch_kind?: unknown;
  readonly obtained_from?: unknown;
  readonly signed_by?: unknown;
}

/** Apple for Apple's own apps; the team in "Developer ID Application: Team (ID)"; else unknown. */
function publisherOf(app: Application): string {
  if (app.obtained_from === 'apple') return 'Apple';
  const signer = Array.isArray(app.signed_by) ? jsonText(app.signed_by[0]) : '';
  const team = /^Developer ID Application: (.+?)(?: \([A-Z0-9]+\))?$/.exec(signer);
  return team ? (team[1] as string) : '';
}

/**
 * Applications from `system_profiler -json SPApplicationsDataType`. Its lastModified is when
 * the bundle last changed, not when it was installed, so install_date_unix stays 0. The
 * same name often appears more than once (copies in several folders); collect.ts removes
 * exact duplicates and keeps those whose architecture or publisher differ. An app without a
 * version (many in-house and older apps) is a record with an empty one; an entry that is not
 * an object is skipped and counted, one without a name counted as name_missing.
 */
export function parseSystemProfilerApplications(json: string): ParsedPackages {
  let document: unknown;
  try {
    document = JSON.parse(withoutBom(json));
  } catch (error) {
    throw unparsable('system_profiler', `not JSON (${(error as Error).message})`);
  }
  const apps = (document as { SPApplicationsDataType?: unknown } | null)?.SPApplicationsDataType;
  if (!Array.isArray(apps)) throw unparsable('system_profiler', 'no SPApplicationsDataType array');
  const records = new PackageRecords('system_profiler');
  (apps as unknown[]).forEach((entry, index) => {
    if (typeof entry !== 'object' || entry === null) return records.unreadable(index + 1, JSON.stringify(entry) ?? '');
    const app = entry as Application;
    const arch = jsonText(app.arch_kind);
    records.add(softwarePackage({ name: jsonText(app._name), version: jsonText(app.version), architecture: ARCHITECTURES[arch] ?? arch, publisher: publisherOf(app), source: 'system_profiler' }));
  });
  return records.done();
}
