import { unparsable } from '../errors.ts';
import { softwarePackage, type SoftwarePackage } from '../package.ts';
import { jsonText } from './text.ts';

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

/** Store apps from APPX_SCRIPT's output; frameworks (runtime libraries) are left out. ConvertTo-Json prints one object, not an array, for one package. */
export function parseAppxJson(json: string): SoftwarePackage[] {
  if (json.trim() === '') return [];
  let document: unknown;
  try {
    document = JSON.parse(json);
  } catch (error) {
    throw unparsable('windows-store', `not JSON (${(error as Error).message})`);
  }
  const list = (Array.isArray(document) ? document : [document]) as AppxPackage[];
  return list.flatMap((app) => {
    if (typeof app !== 'object' || app === null) throw unparsable('windows-store', 'an entry is not an object');
    const name = jsonText(app.Name);
    if (name === '' || app.IsFramework === true) return [];
    return [softwarePackage({ name, version: jsonText(app.Version), architecture: jsonText(app.Architecture).toLowerCase(), publisher: publisherFromDistinguishedName(jsonText(app.Publisher)), source: 'windows-store' })];
  });
}
