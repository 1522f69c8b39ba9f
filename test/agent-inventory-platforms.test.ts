import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { CollectContext } from '../agent/inventory/collectors/collector.ts';
import { windowsRegistryCollector } from '../agent/inventory/collectors/windows.ts';
import { dedupePackages } from '../agent/inventory/dedupe.ts';
import { InventoryError } from '../agent/inventory/errors.ts';
import { NOT_AVAILABLE } from '../agent/inventory/run.ts';
import type { SoftwarePackage } from '../agent/inventory/package.ts';
import { parseAppxJson, publisherFromDistinguishedName } from '../agent/inventory/parse/appx.ts';
import { parseBrewList } from '../agent/inventory/parse/brew.ts';
import { parseFlatpakList } from '../agent/inventory/parse/flatpak.ts';
import { parseRegQuery, parseUninstallKeys } from '../agent/inventory/parse/reg.ts';
import { parseSnapList } from '../agent/inventory/parse/snap.ts';
import { parseSystemProfilerApplications } from '../agent/inventory/parse/system-profiler.ts';
import { unixFromYyyymmdd } from '../agent/inventory/parse/text.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/inventory/${name}`, import.meta.url), 'utf8');
const summary = (packages: readonly SoftwarePackage[]) => packages.map((entry) => [entry.name, entry.version, entry.architecture, entry.publisher]);
const collectorFailed = (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED';

test('system_profiler apps get architecture and publisher from their signature, and repeats are reported as listed', () => {
  const packages = parseSystemProfilerApplications(fixture('system_profiler-SPApplicationsDataType.json')).packages;
  assert.deepEqual(summary(packages), [
    ['Safari', '17.2.1', 'universal', 'Apple'],
    ['Google Chrome', '120.0.6099.234', 'universal', 'Google LLC'],
    ['Python Launcher', '3.12.1', 'universal', 'Python Software Foundation'],
    ['Python Launcher', '3.12.1', 'universal', 'Python Software Foundation'],
    ['Zoom', '5.17.1 (28914)', 'arm64', 'Zoom Video Communications, Inc.'],
    ['Zoom', '5.17.1 (28914)', 'x86_64', 'Zoom Video Communications, Inc.'],
    ['Messtechnik Studio', '4.2', 'x86_64', 'Müller GmbH'],
    ['Sony Camera Utility', '2.0.1', 'universal', '株式会社ソニー'],
    ['Numbers', '13.2', 'universal', ''],
    ['HomeMade', '', 'arm64', ''],
  ]);
  assert.ok(packages.every((entry) => entry.source === 'system_profiler' && entry.install_date_unix === 0));
});

test('exact duplicates are dropped once while same-name apps of another architecture are kept', () => {
  const { packages, removed } = dedupePackages(parseSystemProfilerApplications(fixture('system_profiler-SPApplicationsDataType.json')).packages);
  assert.equal(removed, 1);
  assert.equal(packages.filter((entry) => entry.name === 'Python Launcher').length, 1);
  assert.deepEqual(packages.filter((entry) => entry.name === 'Zoom').map((entry) => entry.architecture), ['arm64', 'x86_64']);
});

test('system_profiler output that is not its JSON fails the collection', () => {
  assert.throws(() => parseSystemProfilerApplications('2024-01-01 system_profiler[123:456] error'), collectorFailed);
  assert.throws(() => parseSystemProfilerApplications('{"SPSoftwareDataType":[]}'), collectorFailed);
  assert.deepEqual(parseSystemProfilerApplications('{"SPApplicationsDataType":[]}').packages, []);
});

test('brew formulae list one package per installed version; casks are a separate source', () => {
  const formulae = parseBrewList(fixture('brew-formulae.txt'), 'homebrew').packages;
  assert.deepEqual(formulae.map((entry) => `${entry.name} ${entry.version}`), [
    'git 2.43.0', 'python@3.12 3.12.1_1', 'openssl@3 3.2.0_1', 'node 20.10.0', 'node 21.4.0', 'lib32-example 1.0-rc1', 'ca-certificates 2023-12-12',
  ]);
  const casks = parseBrewList(fixture('brew-casks.txt'), 'homebrew-cask').packages;
  assert.deepEqual(casks.map((entry) => `${entry.source}:${entry.name} ${entry.version}`), [
    'homebrew-cask:firefox 121.0', 'homebrew-cask:visual-studio-code 1.85.1', 'homebrew-cask:google-chrome latest', 'homebrew-cask:docker 4.26.1,131620',
  ]);
  assert.throws(() => parseBrewList('Error: Running Homebrew as root is extremely dangerous\n', 'homebrew'), collectorFailed);
  assert.deepEqual(parseBrewList('git\n', 'homebrew').packages.map((entry) => [entry.name, entry.version]), [['git', '']], 'a name without a version is a record');
});

test('reg query text is read into keys with their values, including empty and multi-string values', () => {
  const { keys, unreadable } = parseRegQuery(fixture('reg-uninstall-64.txt'));
  assert.deepEqual(unreadable, []);
  const git = keys.get('HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\Git_is1');
  assert.equal(git?.get('inno setup: app path'), 'C:\\Program Files\\Git');
  assert.equal(git?.get('comments'), '');
  assert.equal(keys.get('HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Uninstall\\AddressBook')?.size, 0);
  assert.throws(() => parseUninstallKeys([{ text: 'ERROR: Invalid syntax.\r\n', architecture: '' }]), collectorFailed, 'output that is not reg query text fails the collection');
});

test('Windows Uninstall entries skip system components and entries without a name, keep those without a version, and tolerate bad install dates', () => {
  const native = parseUninstallKeys([{ text: fixture('reg-uninstall-64.txt'), architecture: '' }]).packages;
  assert.deepEqual(summary(native), [
    ['7-Zip 23.01 (x64)', '23.01', '', 'Igor Pavlov'],
    ['Git', '2.43.0', '', 'The Git Development Community'],
    ['Messtechnik Studio', '4.2.0.17', '', 'Müller GmbH'],
    ['カメラユーティリティ', '2.0.1', '', '株式会社ソニー'],
    ['Microsoft Update Health Tools', '', '', 'Microsoft Corporation'],
    ['Microsoft Edge WebView2 Runtime', '120.0.2210.144', '', 'Microsoft Corporation'],
  ]);
  const date = (name: string) => native.find((entry) => entry.name === name)?.install_date_unix;
  assert.equal(date('Git'), Date.UTC(2024, 0, 15) / 1000);
  assert.equal(date('7-Zip 23.01 (x64)'), 0, 'no InstallDate');
  assert.equal(date('Messtechnik Studio'), 0, '"2024-01-15" is not YYYYMMDD');
  assert.equal(date('カメラユーティリティ'), 0, 'month 13 does not exist');
  const wow = parseUninstallKeys([{ text: fixture('reg-uninstall-wow6432node.txt'), architecture: 'x86' }]).packages;
  assert.deepEqual(wow.map((entry) => `${entry.name}/${entry.architecture}/${entry.source}`), [
    'Notepad++ (32-bit x86)/x86/windows-registry', 'Adobe Acrobat Reader DC/x86/windows-registry', 'Microsoft Edge WebView2 Runtime/x86/windows-registry',
  ]);
  assert.equal(dedupePackages([...native, ...wow]).removed, 0, 'a program in both registry views is two installations');
});

function registry(wow: string | InventoryError, calls: string[][] = []): CollectContext {
  return {
    readFile: async () => NOT_AVAILABLE,
    async run({ command, args }) {
      calls.push([command, ...args]);
      if (!String(args[1]).includes('WOW6432Node')) return fixture('reg-uninstall-64.txt');
      if (wow instanceof InventoryError) throw wow;
      return wow;
    },
  };
}
const regFailure = (stderr: string) => new InventoryError('ERR_INVENTORY_COLLECTOR_FAILED', 'reg failed', { exit_code: 1, stderr });

test('the registry collector reads both 64-bit and WOW6432Node views, and a missing WOW6432Node key (32-bit Windows) is no error', async () => {
  const calls: string[][] = [];
  const both = await windowsRegistryCollector.collect(registry(fixture('reg-uninstall-wow6432node.txt'), calls));
  assert.ok(both !== NOT_AVAILABLE && both.packages.length === 9);
  assert.ok(calls.every((call) => call[0] === 'reg' && call.includes('/s') && call.includes('/reg:64')));
  const only64 = await windowsRegistryCollector.collect(registry(regFailure('ERROR: The system was unable to find the specified registry key or value.')));
  assert.ok(only64 !== NOT_AVAILABLE && only64.packages.length === 6);
  await assert.rejects(windowsRegistryCollector.collect(registry(regFailure('ERROR: Access is denied.'))), collectorFailed);
});

test('YYYYMMDD install dates become UTC midnight; anything else is unknown', () => {
  assert.equal(unixFromYyyymmdd('20240229'), Date.UTC(2024, 1, 29) / 1000);
  for (const bad of ['20230229', '2024-01-15', '0', '', '19000101', '20241345', undefined]) assert.equal(unixFromYyyymmdd(bad), 0, String(bad));
});

test('snap list skips disabled revisions and strips publisher verification marks', () => {
  assert.deepEqual(summary(parseSnapList(fixture('snap-list.txt')).packages), [
    ['core22', '20240111', '', 'canonical'],
    ['firefox', '122.0-2', '', 'mozilla'],
    ['gnome-42-2204', '0+git.ff35a85', '', 'canonical'],
    ['my-tool', '1.0~rc1', '', ''],
    ['snapd', '2.61.1', '', 'canonical'],
  ]);
  assert.deepEqual(parseSnapList("No snaps are installed yet. Try 'snap install hello-world'.\n").packages, []);
  assert.throws(() => parseSnapList('error: cannot communicate with server: connection refused\n'), collectorFailed);
});

test('flatpak apps are named by application id, falling back to the branch when unversioned', () => {
  assert.deepEqual(summary(parseFlatpakList(fixture('flatpak-list.txt')).packages), [
    ['org.mozilla.firefox', '121.0.1', 'x86_64', ''],
    ['com.valvesoftware.Steam', '1.0.0.78', 'x86_64', ''],
    ['org.gnome.Platform.Example', '45', 'aarch64', ''],
  ]);
  assert.throws(() => parseFlatpakList('Firefox  121.0.1\n'), collectorFailed);
});

test('Windows Store packages leave out frameworks and take the publisher organisation from the certificate name', () => {
  assert.deepEqual(summary(parseAppxJson(fixture('appx-packages.json')).packages), [
    ['Microsoft.WindowsCalculator', '11.2311.0.0', 'x64', 'Microsoft Corporation'],
    ['SpotifyAB.SpotifyMusic', '1.229.421.0', 'x86', '453637B3-4E12-4CDF-B0D3-2A3C863BF6EF'],
    ['MuellerGmbH.Messtechnik', '4.2.0.0', 'neutral', 'Müller GmbH, Werk 2'],
  ]);
  assert.equal(parseAppxJson('{"Name":"Only.One","Version":"1.0.0.0","Architecture":"Arm64","Publisher":"CN=X","IsFramework":false}').packages.length, 1, 'one package is an object, not an array');
  assert.equal(publisherFromDistinguishedName('CN=株式会社サンプル, C=JP'), '株式会社サンプル');
  assert.throws(() => parseAppxJson('Get-AppxPackage : Access is denied.'), collectorFailed);
});
