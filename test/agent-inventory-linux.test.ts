import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { InventoryError } from '../agent/inventory/errors.ts';
import type { SoftwarePackage } from '../agent/inventory/package.ts';
import { parseApkInstalled } from '../agent/inventory/parse/apk.ts';
import { DPKG_QUERY_FORMAT, parseDpkgQuery } from '../agent/inventory/parse/dpkg.ts';
import { parsePacmanQi } from '../agent/inventory/parse/pacman.ts';
import { parseRpmQuery, rpmVersion } from '../agent/inventory/parse/rpm.ts';
import { hasCommand } from './helpers/tools.ts';

const fixture = (name: string) => readFileSync(new URL(`./fixtures/inventory/${name}`, import.meta.url), 'utf8');

function find(packages: readonly SoftwarePackage[], name: string, architecture?: string): SoftwarePackage {
  const found = packages.find((entry) => entry.name === name && (architecture === undefined || entry.architecture === architecture));
  assert.ok(found, `${name}${architecture ? `:${architecture}` : ''} is listed`);
  return found;
}


test('the dpkg parser reads this Debian machine\'s real dpkg-query output: hundreds of packages with plausible fields', () => {
  assert.ok(hasCommand('dpkg-query'), 'these tests read the real dpkg database of the Debian machine they run on');
  const output = execFileSync('dpkg-query', ['-W', `-f=${DPKG_QUERY_FORMAT}`], { encoding: 'utf8', env: { ...process.env, LC_ALL: 'C' }, maxBuffer: 64 * 1024 * 1024 });
  const packages = parseDpkgQuery(output).packages;
  assert.ok(packages.length >= 100, `found ${packages.length}`);
  for (const name of ['coreutils', 'bash', 'dpkg']) {
    const entry = find(packages, name);
    assert.match(entry.version, /^(\d+:)?\d[\w.+~:-]*$/, `${name} version ${entry.version}`);
    assert.match(entry.architecture, /^(amd64|arm64|i386|armhf|armel|ppc64el|s390x|riscv64|mips64el|all)$/, `${name} architecture`);
    assert.notEqual(entry.publisher, '');
    assert.doesNotMatch(entry.publisher, /[<>@]/, 'the maintainer\'s address is not part of the publisher');
    assert.equal(entry.source, 'dpkg');
  }
  const installDate = find(packages, 'bash').install_date_unix;
  assert.ok(installDate === 0 || (installDate > 946_684_800 && installDate <= Date.now() / 1000 + 86_400), `bash install date ${installDate}`);
  for (const entry of packages) assert.ok(entry.name !== '' && entry.version !== '', JSON.stringify(entry));
});

test('dpkg lists only fully installed packages, keeps both architectures of a multi-arch package, and keeps ~ versions', () => {
  const packages = parseDpkgQuery(fixture('dpkg-query.txt')).packages;
  const names = packages.map((entry) => `${entry.name}:${entry.architecture}`);
  assert.deepEqual(names, ['bash:amd64', 'libc6:amd64', 'libc6:i386', 'python3.11-venv:amd64', 'libfoo-rc:amd64', 'firmware-misc-nonfree:all']);
  assert.equal(find(packages, 'libfoo-rc').version, '1.0~rc1-2');
  assert.equal(find(packages, 'libfoo-rc').publisher, 'Jörg Müller');
  assert.equal(find(packages, 'python3.11-venv').install_date_unix, 1_719_830_403);
  assert.equal(find(packages, 'firmware-misc-nonfree').install_date_unix, 0, 'no file-list date: unknown, not an error');
});

test('dpkg output in another format is a collector failure, not an empty list', () => {
  assert.throws(() => parseDpkgQuery('bash 5.2.15-2\n'), (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED' && error.details.line === 1);
  assert.deepEqual(parseDpkgQuery('').packages, [], 'a tool that listed nothing gives an empty list');
});

test('rpm versions carry the epoch only when the package has one', () => {
  assert.equal(rpmVersion('1', '3.0.7', '27.el9'), '1:3.0.7-27.el9');
  assert.equal(rpmVersion('(none)', '5.1.8', '9.el9'), '5.1.8-9.el9');
  assert.equal(rpmVersion('(none)', '1.0', '(none)'), '1.0');
  const packages = parseRpmQuery(fixture('rpm-qa.txt')).packages;
  assert.equal(packages.length, 8);
  assert.deepEqual(find(packages, 'openssl'), { name: 'openssl', version: '1:3.0.7-27.el9', architecture: 'x86_64', publisher: 'AlmaLinux', source: 'rpm', install_date_unix: 1_714_042_900 });
  assert.equal(find(packages, 'libfoo').version, '2:1.0~rc1-2.fc39');
  assert.equal(find(packages, 'libfoo').publisher, '', '(none) vendor is unknown, not the text "(none)"');
  assert.equal(find(packages, 'glibc', 'i686').version, find(packages, 'glibc', 'x86_64').version);
  assert.equal(find(packages, 'python3.11-pip-wheel').architecture, 'noarch');
  assert.equal(find(packages, 'gpg-pubkey').architecture, '');
});

test('rpm output with missing fields fails the collection', () => {
  assert.throws(() => parseRpmQuery('bash-5.1.8-9.el9.x86_64\n'), (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED');
});

test('pacman -Qi blocks give name, epoch version, architecture, packager and local install date', () => {
  const packages = parsePacmanQi(fixture('pacman-Qi.txt')).packages;
  assert.deepEqual(packages.map((entry) => entry.name), ['bash', 'lib32-gcc-libs', 'python-pip', 'yay-bin']);
  const bash = find(packages, 'bash');
  assert.equal(bash.version, '5.2.026-2');
  assert.equal(bash.architecture, 'x86_64');
  assert.equal(bash.publisher, 'Levente Polyak');
  assert.equal(bash.install_date_unix, new Date(2024, 3, 2, 10, 0, 0).getTime() / 1000);
  assert.equal(find(packages, 'python-pip').version, '1:24.0-1');
  assert.equal(find(packages, 'python-pip').architecture, 'any');
  assert.equal(find(packages, 'lib32-gcc-libs').version, '13.2.1-5');
  assert.equal(find(packages, 'yay-bin').publisher, '', 'an AUR build has no packager');
});

test('a pacman block without a Name fails the collection', () => {
  assert.throws(() => parsePacmanQi('error: something went wrong\n'), (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED');
});

test('apk\'s installed database gives name, version, architecture and maintainer of every package', () => {
  const packages = parseApkInstalled(fixture('apk-installed.txt')).packages;
  assert.deepEqual(
    packages.map((entry) => [entry.name, entry.version, entry.architecture, entry.publisher]),
    [
      ['musl', '1.2.4-r2', 'x86_64', 'Timo Teräs'],
      ['busybox', '1.36.1-r5', 'x86_64', 'Sören Tempel'],
      ['py3-pip', '23.1.2-r0', 'noarch', 'Natanael Copa'],
      ['lib32-compat-0.4', '0.4.0_rc1-r1', 'x86', '株式会社サンプル'],
    ],
  );
  assert.ok(packages.every((entry) => entry.source === 'apk' && entry.install_date_unix === 0), 'apk records build time, not install time');
  assert.throws(() => parseApkInstalled('C:Q1abc=\nT:no name\n'), (error: unknown) => error instanceof InventoryError && error.code === 'ERR_INVENTORY_COLLECTOR_FAILED');
});
