import { unparsable } from '../errors.ts';
import { softwarePackage } from '../package.ts';
import { PackageRecords, type ParsedPackages } from './records.ts';
import { jsonText, withoutBom } from './text.ts';

/** The PowerShell that lists Store (AppX/MSIX) packages for all users as JSON. */
export const APPX_SCRIPT =
  "[Console]::OutputEncoding=[Text.Encoding]::UTF8; Get-AppxPackage -AllUsers | Select-Object Name,Version,@{n='Architecture';e={$_.Architecture.ToString()}},Publisher,IsFramework | ConvertTo-Json -Compress";

interface AppxPackage {
  readonly Name?: unknown;
  readonly Version?: unknown;
  readonly Architecture?: unknown;
  readonly Publisher?: unknown;
  readonly IsFramework?: unknown;
}

/** "CN=Microsoft Corporation, O=Microsoft Corporation, L=Redmond, …" → the O (else CN) part. */
export function publisherFromDistinguishedName(dn: string): string {
  return /(?:^|,\s*)O=("[^"]*"|[^,]*)/.exec(dn)?.[1]?.replace(/^"|"$/g, '') ?? /^CN=("[^"]*"|[^,]*)/.exec(dn)?.[1]?.replace(/^"|"$/g, '') ?? dn;
}

/**
 * Store apps from APPX_SCRIPT's output; frameworks (runtime libraries) are left out. ConvertTo-Json
 * prints one object, not an array, for one package. An entry that is not an object is skipped and
 * counted, one without a name counted as name_missing.
 */
export function parseAppxJson(json: string): ParsedPackages {
  const records = new PackageRecords('windows-store');
  if (json.trim() === '') return records.done();
  let document: unknown;
  try {
    document = JSON.parse(withoutBom(json));
  } catch (error) {
    throw unparsable('windows-store', `not JSON (${(error as Error).message})`);
  }
  (Array.isArray(document) ? document : [document]).forEach((entry: unknown, index) => {
    if (typeof entry !== 'object' || entry === null) return records.unreadable(index + 1, JSON.stringify(entry) ?? '');
    const app = entry as AppxPackage;
    if (app.IsFramework === true) return records.excluded();
    records.add(softwarePackage({ name: jsonText(app.Name), version: jsonText(app.Version), architecture: jsonText(app.Architecture).toLowerCase(), publisher: publisherFromDistinguishedName(jsonText(app.Publisher)), source: 'windows-store' }));
  });
  return records.done();
}
