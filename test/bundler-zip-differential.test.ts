import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parsePublicKeyFile, type PublicKey } from '../common/minisign.ts';
import { buildBundle, parseBundleRequest, verifyBundle } from '../bundler/index.ts';
import { packageRoot } from '../common/package-root.ts';
import { formatSha256Sums, sha256Hex } from '../bundler/lib/sha256sums.ts';
import { openZip } from '../bundler/zip/read.ts';
import { createFixtureAppliance, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { END_SIGNATURE, endRecord, forgeEntry, type EntrySpec } from './helpers/zip-forge.ts';

const TOP = 'ct-ops-agent-0.1.0-linux-x64';
const EVIL_INSTALL = '#!/bin/sh\necho "attacker code running as $(id -un)"\n';

/** The genuine bundle's files, as EntrySpecs (stored, so the attacker's copy is easy to read in a hex dump). */
async function genuineSpecs(bundle: string): Promise<EntrySpec[]> {
  const reader = await openZip(bundle);
  try {
    const specs: EntrySpec[] = [];
    for (const entry of reader.entries) specs.push({ name: entry.name, data: await reader.read(entry, 64 * 1024 * 1024), mode: 0o100000 | entry.permissions!, deflate: false });
    return specs;
  } finally {
    await reader.close();
  }
}

/**
 * The reproduction from issue 8, item 1: after the genuine local entries, the
 * attacker's; then the genuine central directory and the attacker's back to back;
 * then an end record whose offset names the genuine directory and whose size the
 * attacker's. Readers that trust the offset see the genuine files; readers that
 * find the directory by its size from the end record (unzip, Python, libarchive,
 * Java) shift every offset by the genuine directory's size and see the attacker's.
 */
function shadowDirectoryZip(genuine: Buffer, shadow: readonly EntrySpec[]): Buffer {
  const end = genuine.subarray(genuine.length - 22);
  assert.equal(end.readUInt32LE(0), END_SIGNATURE, 'the genuine bundle has no comment');
  const directorySize = end.readUInt32LE(12);
  const directoryOffset = end.readUInt32LE(16);
  const forged = shadow.map(forgeEntry);
  let position = directoryOffset;
  const records = forged.map((entry) => {
    const record = entry.central(position - directorySize);
    position += entry.local.length;
    return record;
  });
  const shadowLocals = Buffer.concat(forged.map((entry) => entry.local));
  const shadowDirectory = Buffer.concat(records);
  return Buffer.concat([
    genuine.subarray(0, directoryOffset),
    shadowLocals,
    genuine.subarray(directoryOffset, directoryOffset + directorySize),
    shadowDirectory,
    endRecord({ entries: end.readUInt16LE(10), directorySize: shadowDirectory.length, directoryOffset: directoryOffset + shadowLocals.length }),
  ]);
}

function run(command: string, args: readonly string[], cwd?: string): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 60_000, ...(cwd ? { cwd } : {}) });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('bundle verify and standard extractors agree on what a zip holds', () => {
  let fixture: FixtureAppliance;
  let bundle: string;
  let key: PublicKey;
  let attack: string;

  before(async () => {
    fixture = await createFixtureAppliance();
    const built = await buildBundle(parseBundleRequest({ os: 'linux', arch: 'x64', address: 'ingest.example:9443', token: { mode: 'none' }, createdBy: 'tester' }), {
      dataDir: fixture.dataDir, outDir: join(fixture.root, 'out'), agentsDir: fixture.agentsDir, templatesDir: fixture.templatesDir,
    });
    bundle = built.path;
    key = parsePublicKeyFile(readFileSync(join(fixture.dataDir, 'bundle.pub'), 'utf8'));
    const replaced = new Map([[`${TOP}/install.sh`, EVIL_INSTALL], [`${TOP}/agent.toml`, '[agent]\naddress = "attacker.example:9443"\n']]);
    const files = (await genuineSpecs(bundle)).map((spec) => (replaced.has(spec.name as string) ? { ...spec, data: Buffer.from(replaced.get(spec.name as string)!) } : spec));
    const listed = files.filter((spec) => !/\/SHA256SUMS(\.minisig)?$/.test(spec.name as string));
    const sums = formatSha256Sums(listed.map((spec) => ({ name: (spec.name as string).slice(TOP.length + 1), sha256: sha256Hex(spec.data!) })));
    const shadow = files.map((spec) => (spec.name === `${TOP}/SHA256SUMS` ? { ...spec, data: Buffer.from(sums) } : spec));
    attack = join(fixture.root, 'attack.zip');
    writeFileSync(attack, shadowDirectoryZip(readFileSync(bundle), shadow));
  });
  after(() => rmSync(fixture.root, { recursive: true, force: true }));

  test("the issue's shadow-directory zip: unzip, python3 zipfile and bsdtar extract the attacker's install.sh; verify refuses it (ERR_BUNDLE_ZIP_AMBIGUOUS, directory-misplaced)", async () => {
    const extractors: Array<[string, (into: string) => ReturnType<typeof run>]> = [
      ['unzip -o', (into) => run('unzip', ['-o', attack, '-d', into])],
      ['python3 zipfile', (into) => run('python3', ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])', attack, into])],
      ['bsdtar', (into) => run('bsdtar', ['-xf', attack, '-C', into])],
    ];
    for (const [label, extract] of extractors) {
      const into = join(fixture.root, label.replace(/\W+/g, '-'));
      mkdirSync(into);
      const result = extract(into);
      assert.ok(result.status === 0 || result.status === 1, `${label}: ${result.stderr}`);
      assert.equal(readFileSync(join(into, TOP, 'install.sh'), 'utf8'), EVIL_INSTALL, `${label} extracts the attacker's install.sh`);
      assert.equal(run('sha256sum', ['-c', 'SHA256SUMS'], join(into, TOP)).status, 0, `${label}: sha256sum -c passes on the attacker's files`);
    }
    assert.match(run('sh', [join(fixture.root, 'unzip-o', TOP, 'install.sh')]).stdout, /attacker code running/);

    const report = await verifyBundle(attack, key);
    assert.equal(report.ok, false);
    assert.equal(report.exitCode, 65);
    assert.deepEqual(report.problems.map((problem) => [problem.code, problem.reason]), [['ERR_BUNDLE_ZIP_AMBIGUOUS', 'directory-misplaced']]);
    const cli = run(process.execPath, ['--import', 'tsx', join(packageRoot(), 'bundler/main.ts'), 'verify', attack, '--pubkey', join(fixture.dataDir, 'bundle.pub'), '--json'], packageRoot());
    assert.equal(cli.status, 65, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout).problems.map((problem: { code: string; reason: string }) => [problem.code, problem.reason]), [['ERR_BUNDLE_ZIP_AMBIGUOUS', 'directory-misplaced']]);
  });

  test('the same bundle re-zipped by standard tools still verifies: Info-ZIP zip -r (plain, -fd, streamed, -D, -X), bsdtar -a and python3 shutil.make_archive', async () => {
    const extracted = join(fixture.root, 'rezip');
    mkdirSync(extracted);
    assert.equal(run('unzip', ['-q', bundle, '-d', extracted]).status, 0);
    // [label, command run in the extracted folder, zip it writes, what makes it differ from the bundler's own zip]
    const variants: Array<[string, string, string, { directoryEntry: boolean; descriptors: boolean }]> = [
      ['zip -r', `zip -qr ../plain.zip ${TOP}`, 'plain.zip', { directoryEntry: true, descriptors: false }],
      ['zip -r -fd', `zip -qr -fd ../descriptors.zip ${TOP}`, 'descriptors.zip', { directoryEntry: true, descriptors: true }],
      ['zip -r - | cat', `zip -qr - ${TOP} | cat > ../streamed.zip`, 'streamed.zip', { directoryEntry: true, descriptors: true }],
      ['zip -r -D (no directory entries)', `zip -qr -D ../no-directories.zip ${TOP}`, 'no-directories.zip', { directoryEntry: false, descriptors: false }],
      ['zip -r -X (no extra attributes)', `zip -qr -X ../no-extras.zip ${TOP}`, 'no-extras.zip', { directoryEntry: true, descriptors: false }],
      ['bsdtar -a -cf', `bsdtar -a -cf ../bsdtar.zip ${TOP}`, 'bsdtar.zip', { directoryEntry: true, descriptors: true }],
      ['python3 shutil.make_archive', `python3 -c "import shutil; shutil.make_archive('../shutil', 'zip', '.', '${TOP}')"`, 'shutil.zip', { directoryEntry: true, descriptors: false }],
    ];
    for (const [label, command, file, expected] of variants) {
      const made = run('sh', ['-c', command], extracted);
      assert.equal(made.status, 0, `${label}: ${made.stderr}`);
      const zip = join(fixture.root, file);
      const listing = run('python3', ['-c', 'import sys, zipfile; print("\\n".join(f"{i.filename} {i.flag_bits}" for i in zipfile.ZipFile(sys.argv[1]).infolist()))', zip]).stdout;
      assert.equal(new RegExp(`^${TOP}/ \\d+$`, 'm').test(listing), expected.directoryEntry, `${label}: directory entry`);
      assert.equal(/^\S+ 8$/m.test(listing), expected.descriptors, `${label}: data descriptors`);
      const report = await verifyBundle(zip, key);
      assert.deepEqual(report.problems, [], label);
      assert.equal(report.ok, true, label);
    }
  });

  test('the folder unzip or bsdtar extracts is verified directly by the ct-ops-bundle CLI; a re-zip of the bundle extracted by bsdtar too', async () => {
    const cli = (target: string) => run(process.execPath, ['--import', 'tsx', join(packageRoot(), 'bundler/main.ts'), 'verify', target, '--pubkey', join(fixture.dataDir, 'bundle.pub')], packageRoot());
    const extractors: Array<[string, (into: string) => ReturnType<typeof run>]> = [
      ['unzip', (into) => run('unzip', ['-q', bundle, '-d', into])],
      ['bsdtar', (into) => run('bsdtar', ['-xf', bundle, '-C', into])],
    ];
    for (const [label, extract] of extractors) {
      const into = join(fixture.root, `folder-${label}`);
      mkdirSync(into);
      assert.equal(extract(into).status, 0, label);
      const verified = cli(join(into, TOP));
      assert.equal(verified.status, 0, `${label}: ${verified.stdout}${verified.stderr}`);
      assert.match(verified.stdout, /^OK: .*all 12 files match SHA256SUMS/m, label);
    }
    const rezipped = join(fixture.root, 'bsdtar-extracted-zip-r.zip');
    assert.equal(run('zip', ['-qr', rezipped, TOP], join(fixture.root, 'folder-bsdtar')).status, 0);
    assert.equal(cli(rezipped).status, 0);
  });
});
