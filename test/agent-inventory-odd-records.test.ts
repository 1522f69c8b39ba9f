import assert from 'node:assert/strict';
import { test } from 'node:test';
import { collectInventory, InventoryError, type InventoryCollector } from '../agent/inventory/index.ts';
import { parseApkInstalled } from '../agent/inventory/parse/apk.ts';
import { parseAppxJson } from '../agent/inventory/parse/appx.ts';
import { parseBrewList } from '../agent/inventory/parse/brew.ts';
import { parseDpkgQuery } from '../agent/inventory/parse/dpkg.ts';
import { parseFlatpakList } from '../agent/inventory/parse/flatpak.ts';
import { parsePacmanQi } from '../agent/inventory/parse/pacman.ts';
import type { ParsedPackages } from '../agent/inventory/parse/records.ts';
import { parseUninstallKeys } from '../agent/inventory/parse/reg.ts';
import { parseRpmQuery } from '../agent/inventory/parse/rpm.ts';
import { parseSnapList } from '../agent/inventory/parse/snap.ts';
import { parseSystemProfilerApplications } from '../agent/inventory/parse/system-profiler.ts';
import { packageSkipReason, PACKAGE_FIELD_LIMITS } from '../common/inventory-records.ts';

// Records a real package manager can produce (issue 9, §3): each is a record, stored as printed;
// a line no parser can read is skipped and counted, never the end of the scan.

const rows = (parsed: ParsedPackages) => parsed.packages.map((entry) => [entry.name, entry.version, entry.architecture, entry.publisher]);
const counts = (parsed: ParsedPackages) => Object.fromEntries(parsed.skipped.map((entry) => [entry.reason, entry.count]));
const collectorFailed = (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED';
const dpkgLine = (name: string, version: string, arch: string, status = 'install ok installed') => [name, version, arch, 'Jörg Müller <j@example.org>', '1719830403', status].join('\t');

test('dpkg: the issue\'s empty-version line, held and trigger-pending packages, multi-arch twins and odd names are records; garbage lines are counted', () => {
  const longName = `lib${'x'.repeat(PACKAGE_FIELD_LIMITS.name)}`;
  const output = [
    'emptyver\t\tall\t\t\tinstall ok installed',
    dpkgLine('libc6', '2.36-9+deb12u4', 'amd64'),
    dpkgLine('libc6', '2.36-9+deb12u4', 'i386'),
    dpkgLine('held-pkg', '1:2.0~rc1+dfsg-3', 'all', 'hold ok installed'),
    dpkgLine('man-db', '2.11.2-2', 'armhf', 'install ok triggers-pending'),
    dpkgLine('noarch-pkg', '0', ''),
    dpkgLine('g++-12', '12.2.0-14', 'arm64'),
    dpkgLine('gone', '1.0', 'amd64', 'deinstall ok config-files'),
    dpkgLine('', '1.0', 'amd64'),
    dpkgLine(longName, '1.0', 'amd64'),
    'dpkg-query: warning: parsing file near line 7: odd field',
  ].join('\n');
  const parsed = parseDpkgQuery(output);
  assert.deepEqual(rows(parsed), [
    ['emptyver', '', 'all', ''],
    ['libc6', '2.36-9+deb12u4', 'amd64', 'Jörg Müller'],
    ['libc6', '2.36-9+deb12u4', 'i386', 'Jörg Müller'],
    ['held-pkg', '1:2.0~rc1+dfsg-3', 'all', 'Jörg Müller'],
    ['man-db', '2.11.2-2', 'armhf', 'Jörg Müller'],
    ['noarch-pkg', '0', '', 'Jörg Müller'],
    ['g++-12', '12.2.0-14', 'arm64', 'Jörg Müller'],
  ]);
  assert.deepEqual(counts(parsed), { name_missing: 1, name_too_long: 1, unparsable: 1 });
  assert.equal(parsed.skipped.find((entry) => entry.reason === 'unparsable')?.example, 'dpkg-query: warning: parsing file near line 7: odd field');
  assert.equal(parsed.skipped.find((entry) => entry.reason === 'name_too_long')?.example.length, 80, 'an example is an excerpt');
  for (const entry of parsed.packages) assert.equal(packageSkipReason(entry), undefined, `${entry.name} is storable`);
});

test('output where unreadable lines outnumber records is not a list with odd lines: the collection fails', () => {
  assert.throws(() => parseDpkgQuery(['garbage one', 'garbage two', dpkgLine('bash', '5.2', 'amd64')].join('\n')), (error: unknown) => collectorFailed(error) && (error as InventoryError).details.line === 1);
  assert.throws(() => parseRpmQuery('error: rpmdb: BDB0113 Thread/process failed\nerror: cannot open Packages index\n'), collectorFailed);
  const oneOfTwo = parseRpmQuery(['bash\t(none)\t5.1.8\t9.el9\tx86_64\tAlmaLinux\t1714042900', 'truncated line'].join('\n'));
  assert.deepEqual(counts(oneOfTwo), { unparsable: 1 }, 'as many records as odd lines: the records are kept');
});

test('rpm: gpg-pubkey without architecture or vendor, and multilib twins, are records', () => {
  const parsed = parseRpmQuery([
    'gpg-pubkey\t(none)\t3228467c\t613798eb\t(none)\t(none)\t1714042900',
    'glibc\t(none)\t2.34\t100.el9\tx86_64\tAlmaLinux\t1714042900',
    'glibc\t(none)\t2.34\t100.el9\ti686\tAlmaLinux\t1714042900',
    'kernel-core\t(none)\t5.14.0\t427.13.1.el9_4\tx86_64\t\t1714042900',
  ].join('\n'));
  assert.deepEqual(rows(parsed), [
    ['gpg-pubkey', '3228467c-613798eb', '', ''],
    ['glibc', '2.34-100.el9', 'x86_64', 'AlmaLinux'],
    ['glibc', '2.34-100.el9', 'i686', 'AlmaLinux'],
    ['kernel-core', '5.14.0-427.13.1.el9_4', 'x86_64', ''],
  ]);
  assert.deepEqual(parsed.skipped, []);
});

test('pacman and apk: an entry without a version is a record; one without a name is counted', () => {
  const pacman = parsePacmanQi([
    'Name            : linux-firmware', 'Version         : 20240312.3b128b60-1', 'Architecture    : any', 'Packager        : Unknown Packager', '',
    'Name            : odd-no-version', 'Architecture    : x86_64', '',
    'Description     : a block without a Name',
  ].join('\n'));
  assert.deepEqual(rows(pacman), [['linux-firmware', '20240312.3b128b60-1', 'any', ''], ['odd-no-version', '', 'x86_64', '']]);
  assert.deepEqual(counts(pacman), { unparsable: 1 });
  const apk = parseApkInstalled(['P:musl', 'V:1.2.4-r2', 'A:armhf', '', 'P:virtual-no-version', 'A:noarch', '', 'C:Q1abc=', 'T:no name'].join('\n'));
  assert.deepEqual(rows(apk), [['musl', '1.2.4-r2', 'armhf', ''], ['virtual-no-version', '', 'noarch', '']]);
  assert.deepEqual(counts(apk), { unparsable: 1 });
});

test('brew: casks at "latest", several kept versions, tap-qualified names; a warning line is counted', () => {
  const casks = parseBrewList('google-chrome latest\nfont-fira-code-nerd-font 3.1.1\nhomebrew/cask-versions/firefox@esr 115.6.0esr\n', 'homebrew-cask');
  assert.deepEqual(rows(casks), [['google-chrome', 'latest', '', ''], ['font-fira-code-nerd-font', '3.1.1', '', ''], ['homebrew/cask-versions/firefox@esr', '115.6.0esr', '', '']]);
  const formulae = parseBrewList('node 20.10.0 21.4.0\nWarning: Treating node as a formula.\npython@3.12 3.12.1_1\n', 'homebrew');
  assert.deepEqual(rows(formulae), [['node', '20.10.0', '', ''], ['node', '21.4.0', '', ''], ['python@3.12', '3.12.1_1', '', '']]);
  assert.deepEqual(counts(formulae), { unparsable: 1 });
});

test('snap and flatpak: sideloaded snaps, unversioned flatpak apps without an arch; short lines are counted', () => {
  const snap = parseSnapList([
    'Name     Version   Rev    Tracking       Publisher   Notes',
    'my-tool  1.0~rc1   x1     -              -           -',
    'core     16-2.61   16928  latest/stable  canonical✓  core',
    'broken   unset',
  ].join('\n'));
  assert.deepEqual(rows(snap), [['my-tool', '1.0~rc1', '', ''], ['core', '16-2.61', '', 'canonical']]);
  assert.deepEqual(counts(snap), { unparsable: 1 });
  const flatpak = parseFlatpakList('org.example.NoVersion\t\t\t\norg.mozilla.firefox\t121.0.1\tstable\tx86_64\nbad line\twith three\tfields\n');
  assert.deepEqual(rows(flatpak), [['org.example.NoVersion', '', '', ''], ['org.mozilla.firefox', '121.0.1', 'x86_64', '']]);
  assert.deepEqual(counts(flatpak), { unparsable: 1 });
});

test('macOS and Windows Store: apps without a version or publisher are records; entries without a name or not an object are counted', () => {
  const mac = parseSystemProfilerApplications(JSON.stringify({
    SPApplicationsDataType: [{ _name: 'In-House Tool', path: '/Applications/In-House Tool.app' }, { _name: 'Old PPC App', arch_kind: 'arch_ppc' }, { version: '1.0' }, null],
  }));
  assert.deepEqual(rows(mac), [['In-House Tool', '', '', ''], ['Old PPC App', '', 'arch_ppc', '']]);
  assert.deepEqual(counts(mac), { name_missing: 1, unparsable: 1 });
  const store = parseAppxJson(JSON.stringify([{ Name: 'Contoso.Sideloaded', Architecture: 'Neutral' }, { Name: '', Version: '1.0.0.0' }, 'not an object', { Name: 'Microsoft.VCLibs.140.00', IsFramework: true }]));
  assert.deepEqual(rows(store), [['Contoso.Sideloaded', '', 'neutral', '']]);
  assert.deepEqual(counts(store), { name_missing: 1, unparsable: 1 });
});

test('Windows registry: a program without DisplayVersion or Publisher is a record; updates of another product are left out; stray lines are counted', () => {
  const key = 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall';
  const parsed = parseUninstallKeys([
    `${key}\\NoVersion`,
    '    DisplayName    REG_SZ    Legacy In-House Tool',
    '',
    `${key}\\KB5034441`,
    '    DisplayName    REG_SZ    Security Update for Example (KB5034441)',
    '    ParentKeyName    REG_SZ    Example',
    '',
    `${key}\\Hotfix`,
    '    DisplayName    REG_SZ    Hotfix for Example',
    '    ReleaseType    REG_SZ    Hotfix',
    '',
    `${key}\\Multiline`,
    '    DisplayName    REG_SZ    Tool With Comments',
    '    DisplayVersion    REG_SZ    3.0',
    '    Comments    REG_SZ    first line',
    'second line of a value that held a line break',
    '',
  ].join('\r\n'), 'x86');
  assert.deepEqual(rows(parsed), [['Legacy In-House Tool', '', 'x86', ''], ['Tool With Comments', '3.0', 'x86', '']]);
  assert.deepEqual(counts(parsed), { unparsable: 1 });
});

test('the collection adds up what every collector skipped; the scan goes on', async () => {
  const fixed = (name: string, parsed: ParsedPackages): InventoryCollector => ({ name, collect: async () => parsed });
  const result = await collectInventory({
    plan: {
      primary: [fixed('dpkg', parseDpkgQuery([dpkgLine('bash', '5.2', 'amd64'), 'garbage'].join('\n')))],
      additional: [fixed('snap', parseSnapList('Name Version Rev Tracking Publisher Notes\nhello 2.10 42 latest/stable canonical✓ -\nshort line\n'))],
    },
  });
  assert.deepEqual(result.packages.map((entry) => entry.name), ['bash', 'hello']);
  assert.deepEqual(result.skipped.map((entry) => [entry.reason, entry.count]), [['unparsable', 2]]);
});
