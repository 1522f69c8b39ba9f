import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { deflateRawSync } from 'node:zlib';
import { CtOpsError } from '../common/errors.ts';
import { openZip } from '../bundler/zip/read.ts';
import { tempDir } from './helpers/bundler-fixtures.ts';
import { endRecord, extraField, forgeZip, FLAG_UTF8, type EntrySpec } from './helpers/zip-forge.ts';

const INSTALL: EntrySpec = { name: 'top/install.sh', data: Buffer.from('#!/bin/sh\necho genuine\n'), mode: 0o100755 };
const CONFIG: EntrySpec = { name: 'top/agent.toml', data: Buffer.from('[agent]\naddress = "ingest.example:9443"\n') };
const BASE = [INSTALL, CONFIG];

const dir = tempDir('ct-ops-zip-structure-');
after(() => rmSync(dir, { recursive: true, force: true }));
let counter = 0;
function save(bytes: Buffer): string {
  const path = join(dir, `case-${++counter}.zip`);
  writeFileSync(path, bytes);
  return path;
}

/** Opens the zip and reads every entry: what verify does before it trusts anything. */
async function readAll(bytes: Buffer): Promise<Map<string, string>> {
  const reader = await openZip(save(bytes));
  try {
    const contents = new Map<string, string>();
    for (const entry of reader.entries) contents.set(entry.name, (await reader.read(entry, 1024 * 1024)).toString('utf8'));
    return contents;
  } finally {
    await reader.close();
  }
}

async function refusal(bytes: Buffer): Promise<{ code: string; reason: unknown; message: string }> {
  try {
    await readAll(bytes);
  } catch (error) {
    assert.ok(error instanceof CtOpsError, `expected a CtOpsError, got ${String(error)}`);
    return { code: error.code, reason: error.details.reason, message: error.message };
  }
  assert.fail('the zip was accepted');
}

const withEntry = (index: number, change: Partial<EntrySpec>): EntrySpec[] => BASE.map((spec, at) => (at === index ? { ...spec, ...change } : spec));
const lastBytes = (bytes: Buffer, count: number): Buffer => bytes.subarray(bytes.length - count);

describe('zip structure: only zips every reader reads the same way', () => {
  test('a plain zip, one with data descriptors and a directory entry, and an empty file open and read back', async () => {
    const plain = forgeZip(BASE);
    assert.equal(spawnSync('unzip', ['-tq', save(plain)]).status, 0, 'the forged zip is valid for unzip');
    assert.deepEqual([...(await readAll(plain))], [['top/install.sh', '#!/bin/sh\necho genuine\n'], ['top/agent.toml', '[agent]\naddress = "ingest.example:9443"\n']]);
    const streamed = forgeZip([{ name: 'top/', deflate: false, mode: 0o40755 }, ...BASE.map((spec) => ({ ...spec, descriptor: true })), { name: 'top/empty', data: Buffer.alloc(0) }]);
    assert.equal(spawnSync('unzip', ['-tq', save(streamed)]).status, 0);
    assert.equal((await readAll(streamed)).get('top/agent.toml'), '[agent]\naddress = "ingest.example:9443"\n');
  });

  test('Info-ZIP Unix owner fields naming root (what zip -r writes as root) are accepted', async () => {
    const rootOwned = forgeZip(BASE.map((spec) => ({ ...spec, both: { extra: extraField(0x7875, Buffer.from([1, 4, 0, 0, 0, 0, 4, 0, 0, 0, 0])) } })));
    assert.equal((await readAll(rootOwned)).get('top/agent.toml'), '[agent]\naddress = "ingest.example:9443"\n');
  });

  const plain = forgeZip(BASE);
  const cases: Array<[string, () => Buffer, string]> = [
    ['bytes before the first entry, offsets adjusted (a self-extractor)', () => forgeZip(BASE, { prefix: Buffer.from('#!/bin/sh\nexit 0\n') }), 'prefix'],
    ['bytes before the first entry, offsets not adjusted', () => Buffer.concat([Buffer.from('MZ'), plain]), 'directory-misplaced'],
    ['a local name that differs from its central name', () => forgeZip(withEntry(0, { local: { name: 'top/install.sX' } })), 'local-header-mismatch'],
    ['two central records pointing at one local header', () => forgeZip(BASE, { extraCentral: [[0, { ...INSTALL, name: 'top/other.sh' }]] }), 'overlap'],
    ['a gap between two entries', () => forgeZip(BASE, { gap: { after: 0, bytes: Buffer.from('hidden') } }), 'gap'],
    ['bytes between the last entry and the central directory', () => forgeZip(BASE, { gap: { after: 1, bytes: Buffer.from('hidden') } }), 'gap'],
    ['a second end record after the first', () => Buffer.concat([plain, lastBytes(plain, 22)]), 'second-end-record'],
    ['trailing bytes after the end record', () => Buffer.concat([plain, Buffer.from('trailing')]), 'trailing-bytes'],
    ['an end-record signature inside the comment', () => forgeZip(BASE, { comment: Buffer.concat([Buffer.from('note '), endRecord({ entries: 0, directorySize: 0, directoryOffset: 0 })]) }), 'second-end-record'],
    ['an end record whose comment length overruns the file', () => { const bytes = Buffer.from(plain); bytes.writeUInt16LE(4, bytes.length - 2); return bytes; }, 'trailing-bytes'],
    ['an end record counting fewer entries than its directory holds', () => { const bytes = Buffer.from(plain); bytes.writeUInt16LE(1, bytes.length - 14); bytes.writeUInt16LE(1, bytes.length - 12); return bytes; }, 'entry-count-mismatch'],
    ['a local CRC-32 that disagrees with the central one', () => forgeZip(withEntry(0, { local: { crc32: 1 } })), 'local-header-mismatch'],
    ['a local size that disagrees with the central one', () => forgeZip(withEntry(1, { local: { uncompressedSize: 5 } })), 'local-header-mismatch'],
    ['local flags that disagree with the central ones', () => forgeZip(withEntry(1, { local: { flags: FLAG_UTF8 } })), 'local-header-mismatch'],
    ['a Zip64 extra field in the local header only', () => forgeZip(withEntry(0, { local: { extra: extraField(0x0001, Buffer.alloc(16)) } })), 'zip64'],
    ['Zip64 markers in the central sizes', () => forgeZip(withEntry(0, { central: { compressedSize: 0xffffffff } })), 'zip64'],
    ['a data descriptor that disagrees with the central record', () => forgeZip(withEntry(0, { descriptor: true, descriptorBytes: Buffer.alloc(16, 7) })), 'descriptor-mismatch'],
    ['stored data with a data descriptor (streaming readers must guess its end)', () => forgeZip(withEntry(0, { deflate: false, descriptor: true })), 'flags'],
    ['the encryption flag', () => forgeZip(withEntry(0, { both: { flags: 0x0001 } })), 'flags'],
    ['an unknown general-purpose flag', () => forgeZip(withEntry(0, { both: { flags: 0x2000 } })), 'flags'],
    ['an unknown compression method (bzip2)', () => forgeZip(withEntry(0, { both: { method: 12 } })), 'method'],
    ['"version needed" 4.5 (Zip64)', () => forgeZip(withEntry(0, { both: { versionNeeded: 45 } })), 'version-needed'],
    ['a non-ASCII name without the UTF-8 flag (CP437 or UTF-8?)', () => forgeZip(withEntry(1, { name: Buffer.from('top/agent\xe9.toml', 'latin1') })), 'name-encoding'],
    ['a name flagged UTF-8 that is not UTF-8', () => forgeZip(withEntry(1, { name: Buffer.from('top/agent\xc3\x28.toml', 'latin1'), both: { flags: FLAG_UTF8 } })), 'name-encoding'],
    ['a NUL byte in a name', () => forgeZip(withEntry(1, { name: 'top/agent.toml\0.txt' })), 'name-nul'],
    ['an Info-ZIP Unicode Path field naming another file', () => forgeZip(withEntry(0, { both: { extra: extraField(0x7075, Buffer.concat([Buffer.from([1, 0, 0, 0, 0]), Buffer.from('top/evil.sh')])) } })), 'extra-field'],
    ['an AES encryption extra field', () => forgeZip(withEntry(0, { both: { extra: extraField(0x9901, Buffer.alloc(7)) } })), 'extra-field'],
    ['a malformed extra field', () => forgeZip(withEntry(0, { both: { extra: Buffer.from([0x55, 0x54, 9, 0, 1]) } })), 'extra-field'],
    // bsdtar and `unzip -X` run as root give the file this owner; unzip and python do not.
    ['an Info-ZIP Unix field (0x7875) naming uid 1000', () => forgeZip(withEntry(0, { both: { extra: extraField(0x7875, Buffer.from([1, 4, 0xe8, 3, 0, 0, 4, 0xe8, 3, 0, 0])) } })), 'extra-field'],
    ['an old Info-ZIP Unix field (0x7855) naming gid 1000', () => forgeZip(withEntry(0, { local: { extra: extraField(0x7855, Buffer.from([0, 0, 0xe8, 3])) }, central: { extra: extraField(0x7855, Buffer.alloc(0)) } })), 'extra-field'],
    ['a malformed Info-ZIP Unix field (0x7875, sizes overrun)', () => forgeZip(withEntry(0, { both: { extra: extraField(0x7875, Buffer.from([1, 9, 0])) } })), 'extra-field'],
    ['one name twice', () => forgeZip([...BASE, { ...CONFIG, data: Buffer.from('[agent]\naddress = "evil:1"\n') }]), 'duplicate-name'],
    ['names that differ only in case', () => forgeZip([...BASE, { name: 'top/Agent.toml', data: Buffer.from('x') }]), 'duplicate-name'],
    ['names equal after Unicode normalisation (NFC and NFD, as macOS stores them)', () => forgeZip([{ name: 'top/caf\u00e9', both: { flags: FLAG_UTF8 } }, { name: 'top/cafe\u0301', both: { flags: FLAG_UTF8 } }]), 'duplicate-name'],
    ['a file and a directory of the same name', () => forgeZip([{ name: 'top/x', data: Buffer.from('x') }, { name: 'top/x/', deflate: false, mode: 0o40755 }]), 'duplicate-name'],
    ['a zip comment with terminal escapes (unzip prints it)', () => forgeZip(BASE, { comment: Buffer.from('\x1b]0;owned\x07\x1b[2J') }), 'comment'],
    ['a directory entry with data', () => forgeZip([{ name: 'top/', data: Buffer.from('hidden'), mode: 0o40755 }, ...BASE]), 'directory-with-data'],
  ];
  for (const [label, make, reason] of cases) {
    test(`refused: ${label} (ERR_BUNDLE_ZIP_AMBIGUOUS, ${reason})`, async () => {
      const refused = await refusal(make());
      assert.deepEqual([refused.code, refused.reason], ['ERR_BUNDLE_ZIP_AMBIGUOUS', reason], refused.message);
    });
  }

  const dataCases: Array<[string, EntrySpec, RegExp]> = [
    ['a CRC-32 that does not match the data (in both headers)', { ...CONFIG, both: { crc32: 0x12345678 } }, /CRC-32/],
    ['a deflate stream that ends before its compressed size (slack a streaming reader would parse)', { ...CONFIG, rawData: Buffer.concat([deflateRawSync(CONFIG.data!), Buffer.from('PK\x03\x04 hidden entry')]) }, /ends its deflate stream after/],
    ['data that inflates beyond its declared size (a zip bomb)', { ...CONFIG, data: Buffer.alloc(1024 * 1024), both: { uncompressedSize: 1000 } }, /more than its declared 1000 bytes/],
    ['a deflate stream cut short', { ...CONFIG, rawData: deflateRawSync(CONFIG.data!).subarray(0, 10) }, /cannot be inflated/],
  ];
  for (const [label, spec, message] of dataCases) {
    test(`refused when read: ${label} (ERR_BUNDLE_ZIP_AMBIGUOUS, entry-data)`, async () => {
      const refused = await refusal(forgeZip([INSTALL, spec]));
      assert.deepEqual([refused.code, refused.reason], ['ERR_BUNDLE_ZIP_AMBIGUOUS', 'entry-data'], refused.message);
      assert.match(refused.message, message);
    });
  }

  test('the entry count is bounded from the end record, before the directory is read', async () => {
    // The directory region is garbage: a parser that read it first would fail differently.
    const bytes = Buffer.concat([Buffer.alloc(4096, 0x41), endRecord({ entries: 60_000, directorySize: 4096, directoryOffset: 0 })]);
    assert.deepEqual(Object.values(await refusal(bytes)).slice(0, 2), ['ERR_BUNDLE_ZIP_TOO_LARGE', 'too-many-entries']);
    const noZip = await refusal(Buffer.from('not a zip at all'));
    assert.deepEqual([noZip.code, noZip.reason], ['ERR_BUNDLE_ENTRY_INVALID', 'not-a-zip']);
  });

  test('a real 200,000-entry zip (python3 zipfile) is refused in milliseconds with little memory', async () => {
    const path = join(dir, 'many.zip');
    const made = spawnSync('python3', ['-c', 'import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], "w") as z:\n  for i in range(200000): z.writestr(f"top/{i}", b"")', path], { encoding: 'utf8', timeout: 120_000 });
    assert.equal(made.status, 0, made.stderr);
    const rssBefore = process.memoryUsage().rss;
    const started = process.hrtime.bigint();
    const refused = await openZip(path).then(
      () => assert.fail('accepted'),
      (error: CtOpsError) => error,
    );
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    // More than 65,535 entries needs Zip64, which bundles never use; the count is read from the end records alone.
    assert.deepEqual([refused.code, refused.details.reason], ['ERR_BUNDLE_ZIP_AMBIGUOUS', 'zip64']);
    assert.ok(elapsedMs < 2000, `took ${elapsedMs} ms`);
    assert.ok(process.memoryUsage().rss - rssBefore < 64 * 1024 * 1024, 'read no more than the tail');
  });
});
