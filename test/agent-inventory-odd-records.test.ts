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
import { packageSkipReason, PACKAGE_FIELD_LIMITS, storablePackage } from '../common/inventory-records.ts';

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
  const garbage = ['garbage one', 'garbage two', 'garbage three', 'garbage four'];
  assert.throws(() => parseDpkgQuery([...garbage, dpkgLine('bash', '5.2', 'amd64')].join('\n')), (error: unknown) => collectorFailed(error) && (error as InventoryError).details.line === 1);
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

test('Windows registry: a program without DisplayVersion or Publisher is a record; updates of another product are left out; a value with line breaks continues', () => {
  const key = 'HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall';
  const parsed = parseUninstallKeys([{ text: [
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
  ].join('\r\n'), architecture: 'x86' }]);
  assert.deepEqual(rows(parsed), [['Legacy In-House Tool', '', 'x86', ''], ['Tool With Comments', '3.0', 'x86', '']]);
  assert.deepEqual(counts(parsed), {});
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

// Review of issue 9 §3: what a parser read but left out counts as read; a handful of odd lines never
// fails a small list; the registry views are judged as one list and its summary line in any language.

const regKey = (name: string, values: readonly string[]) => [`HKEY_LOCAL_MACHINE\\SOFTWARE\\WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\${name}`, ...values, ''];

test('Windows registry: a value spanning lines, a summary line in any language and a view of system components alone are read, not failed', () => {
  const multiline = parseUninstallKeys([{ text: ['', ...regKey('App', ['    DisplayName    REG_SZ    App', '    Comments    REG_SZ    line one', 'line two', 'line three']), 'End of search: 3 match(es) found.', ''].join('\r\n'), architecture: 'x86' }]);
  assert.deepEqual(rows(multiline), [['App', '', 'x86', '']]);
  assert.deepEqual(counts(multiline), {}, 'the lines of a value are its text, not unreadable lines');
  const german = parseUninstallKeys([{ text: ['', ...regKey('KB1', ['    DisplayName    REG_SZ    Runtime', '    SystemComponent    REG_DWORD    0x1']), 'Ende der Suche: 2 Übereinstimmung(en) gefunden.', ''].join('\r\n'), architecture: 'x86' }]);
  assert.deepEqual([rows(german), counts(german)], [[], {}], 'system components only, German summary: an empty view, nothing unreadable');
  for (const summary of ['Fin de la recherche : 1 correspondance(s) trouvée(s).', '検索の終わり: 1 個の一致が見つかりました。', 'Fim da pesquisa: 1 correspondência(s) encontrada(s).']) {
    const parsed = parseUninstallKeys([{ text: ['', ...regKey('App', ['    DisplayName    REG_SZ    App']), summary, ''].join('\r\n'), architecture: 'x86' }]);
    assert.deepEqual([rows(parsed).length, counts(parsed)], [1, {}], summary);
  }
});

test('Windows registry: the native and WOW6432Node views are judged as one list', () => {
  const native = ['', ...Array.from({ length: 20 }, (_, index) => regKey(`App${index}`, [`    DisplayName    REG_SZ    App ${index}`])).flat(), 'End of search: 20 match(es) found.'].join('\r\n');
  const wow = ['stray one', 'stray two', 'stray three', 'stray four', '', ...regKey('Tool', ['    DisplayName    REG_SZ    Tool'])].join('\r\n');
  const parsed = parseUninstallKeys([{ text: native, architecture: '' }, { text: wow, architecture: 'x86' }]);
  assert.equal(parsed.packages.length, 21);
  assert.deepEqual(counts(parsed), { unparsable: 4 });
  assert.throws(() => parseUninstallKeys([{ text: wow, architecture: 'x86' }]), collectorFailed, 'the same view alone: four odd lines against one program');
});

test('a list of one record with two warning lines, and removed packages with one odd line, are lists: the warnings are counted', () => {
  const warnings = ['warning: one', 'warning: two'];
  const parsers: [string, () => ParsedPackages][] = [
    ['dpkg', () => parseDpkgQuery([dpkgLine('bash', '5.2', 'amd64'), ...warnings].join('\n'))],
    ['rpm', () => parseRpmQuery(['bash\t(none)\t5.1\t1.el9\tx86_64\tRed Hat\t1700000000', ...warnings].join('\n'))],
    ['pacman', () => parsePacmanQi([...warnings.flatMap((line) => [line, '']), 'Name            : bash', 'Version         : 5.2-1'].join('\n'))],
    ['brew', () => parseBrewList(['Warning: one', 'Warning: two', 'wget 1.21'].join('\n'), 'homebrew')],
    ['flatpak', () => parseFlatpakList(['org.a\t1.0\tstable\tx86_64', 'Note that the directories', '/var/lib/flatpak/exports/share'].join('\n'))],
  ];
  for (const [name, parse] of parsers) {
    const parsed = parse();
    assert.deepEqual([parsed.packages.length, counts(parsed)], [1, { unparsable: 2 }], name);
  }
  const removed = parseDpkgQuery([...Array.from({ length: 5 }, (_, index) => dpkgLine(`old${index}`, '1', 'amd64', 'deinstall ok config-files')), 'odd'].join('\n'));
  assert.deepEqual([removed.packages.length, counts(removed)], [0, { unparsable: 1 }], 'removed packages were read: one odd line is not the whole output');
  const frameworks = parseAppxJson(JSON.stringify([{ Name: 'Microsoft.VCLibs', IsFramework: true }, { Name: 'Microsoft.UI.Xaml', IsFramework: true }, 7]));
  assert.deepEqual([frameworks.packages.length, counts(frameworks)], [0, { unparsable: 1 }]);
  assert.throws(() => parseDpkgQuery('dpkg-query: error: cannot access the database\n'), collectorFailed, 'nothing read at all: one error line is not a list');
});

test('an implausible install date is stored unknown and an overlong publisher cut, each counted; the package is kept', () => {
  const in2300 = String(Date.UTC(2300, 0, 1) / 1000);
  const dpkg = parseDpkgQuery([['bash', '5.2', 'amd64', 'M', in2300, 'install ok installed'].join('\t'), dpkgLine('zsh', '5.9', 'amd64')].join('\n'));
  assert.deepEqual(dpkg.packages.map((entry) => [entry.name, entry.install_date_unix]), [['bash', 0], ['zsh', 1719830403]]);
  const pacman = parsePacmanQi(['Name            : a', 'Version         : 1-1', 'Install Date    : Sat 01 Jan 2300 00:00:00 UTC'].join('\n'));
  assert.deepEqual(pacman.packages.map((entry) => entry.install_date_unix), [0]);
  const rpm = parseRpmQuery('bash\t(none)\t5.1\t1\tx86_64\tRed Hat\t99999999999\n');
  assert.deepEqual(rpm.packages.map((entry) => entry.install_date_unix), [0]);
  const reg = parseUninstallKeys([{ text: regKey('App', ['    DisplayName    REG_SZ    App', '    InstallDate    REG_SZ    99991231']).join('\r\n'), architecture: '' }]);
  assert.deepEqual(reg.packages.map((entry) => [entry.name, entry.install_date_unix]), [['App', 0]]);
  // A publisher over the cap whose cut would fall inside a surrogate pair (U+1F600).
  const publisher = `${'P'.repeat(PACKAGE_FIELD_LIMITS.publisher - 1)}\u{1F600}tail`;
  const long = parseUninstallKeys([{ text: regKey('App', ['    DisplayName    REG_SZ    App', `    Publisher    REG_SZ    ${publisher}`]).join('\r\n'), architecture: '' }]);
  assert.deepEqual(long.packages.map((entry) => entry.publisher), ['P'.repeat(PACKAGE_FIELD_LIMITS.publisher - 1)], 'cut before the pair, never inside it');
  assert.deepEqual(counts(long), { publisher_truncated: 1 });
  const overflow = storablePackage({ name: 'a', version: '1', source: 'rpm', architecture: '', publisher: '', install_date_unix: 2 ** 62 });
  assert.deepEqual(overflow, { record: { name: 'a', version: '1', source: 'rpm', architecture: '', publisher: '', install_date_unix: 0 }, normalised: ['install_date_dropped'] });
});

test('a name of spaces is a missing name; JSON with a byte order mark is read', () => {
  assert.equal(packageSkipReason({ name: '   ', version: '1', source: 'dpkg', architecture: '', publisher: '', install_date_unix: 0 }), 'name_missing');
  const apk = parseApkInstalled('P: \nV:1\n\nP:musl\nV:1.2\n');
  assert.deepEqual([rows(apk), counts(apk)], [[['musl', '1.2', '', '']], { name_missing: 1 }]);
  const store = parseAppxJson(`\uFEFF${JSON.stringify([{ Name: 'A', Version: '1', Architecture: 'X64', Publisher: 'CN=x' }])}`);
  assert.deepEqual(rows(store), [['A', '1', 'x64', 'x']]);
  const mac = parseSystemProfilerApplications(`\uFEFF${JSON.stringify({ SPApplicationsDataType: [{ _name: 'Safari', version: '17.2' }] })}`);
  assert.deepEqual(rows(mac), [['Safari', '17.2', '', '']]);
});

test('exact repeats the agent drops are counted as duplicate, with the first repeat as the example', async () => {
  const fixed = (name: string, parsed: ParsedPackages): InventoryCollector => ({ name, collect: async () => parsed });
  const twice = parseDpkgQuery([dpkgLine('bash', '5.2', 'amd64'), dpkgLine('bash', '5.2', 'amd64'), dpkgLine('zsh', '5.9', 'amd64'), dpkgLine('zsh', '5.9', 'amd64'), dpkgLine('zsh', '5.9', 'amd64')].join('\n'));
  const result = await collectInventory({ plan: { primary: [fixed('dpkg', twice)], additional: [] } });
  assert.deepEqual(result.packages.map((entry) => entry.name), ['bash', 'zsh']);
  assert.equal(result.duplicatesRemoved, 3);
  assert.deepEqual(result.skipped, [{ reason: 'duplicate', count: 3, example: 'bash' }]);
});
