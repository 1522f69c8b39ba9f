import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, createWriteStream, linkSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import yazl from 'yazl';
import { blake2b512, parsePublicKeyFile, signDigest, signingKeyFromSeed, type PublicKey } from '../common/minisign.ts';
import { STATUS } from '../common/errors.ts';
import { buildBundle, parseBundleRequest, verifyBundle, type VerifyProblem } from '../bundler/index.ts';
import { packageRoot } from '../common/package-root.ts';
import { formatSha256Sums, sha256Hex } from '../bundler/lib/sha256sums.ts';
import { createFixtureAppliance, type FixtureAppliance } from './helpers/bundler-fixtures.ts';
import { openZip } from '../bundler/zip/read.ts';

const ROOT = packageRoot();
const TOP = 'ct-ops-agent-0.1.0-linux-x64';

interface Entry {
  name: string;
  data: Buffer;
  mode: number;
}

async function readEntries(zip: string): Promise<Entry[]> {
  const reader = await openZip(zip);
  try {
    const entries: Entry[] = [];
    for (const info of reader.entries) entries.push({ name: info.name, data: await reader.read(info, 64 * 1024 * 1024), mode: 0o100000 | (info.permissions ?? 0o644) });
    return entries;
  } finally {
    await reader.close();
  }
}

async function writeEntries(path: string, entries: readonly Entry[]): Promise<string> {
  const zip = new yazl.ZipFile();
  for (const entry of entries) zip.addBuffer(entry.data, entry.name, { mode: entry.mode, mtime: new Date(Date.UTC(2025, 0, 2)), forceDosTimestamp: true });
  zip.end();
  await pipeline(zip.outputStream, createWriteStream(path));
  return path;
}

/** Renames an entry in the raw bytes (local and central headers): how path tricks yazl refuses are made. */
function renameRaw(path: string, from: string, to: string): void {
  assert.equal(Buffer.byteLength(from), Buffer.byteLength(to));
  const bytes = readFileSync(path);
  const needle = Buffer.from(from);
  let at = bytes.indexOf(needle);
  assert.ok(at >= 0);
  for (; at >= 0; at = bytes.indexOf(needle, at + 1)) Buffer.from(to).copy(bytes, at);
  writeFileSync(path, bytes);
}

function runVerify(args: readonly string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'bundler/main.ts'), 'verify', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('ct-ops-bundle verify', () => {
  let fixture: FixtureAppliance;
  let bundle: string;
  let original: Entry[];
  let key: PublicKey;
  let counter = 0;
  const next = (): string => join(fixture.root, `case-${++counter}.zip`);
  const codes = (problems: readonly VerifyProblem[]): string[] => [...new Set(problems.map((problem) => problem.code))];
  const modified = async (change: (entries: Entry[]) => Entry[]): Promise<string> => writeEntries(next(), change(original.map((entry) => ({ ...entry }))));
  /** Re-signs SHA256SUMS with the real bundle key: what only the appliance could do. */
  const resealed = (entries: Entry[]): Entry[] => {
    const listed = entries.filter((entry) => !entry.name.endsWith('/SHA256SUMS') && !entry.name.endsWith('/SHA256SUMS.minisig'));
    const sums = Buffer.from(formatSha256Sums(listed.map((entry) => ({ name: entry.name.slice(TOP.length + 1), sha256: sha256Hex(entry.data) }))));
    const signature = Buffer.from(signDigest(blake2b512(sums), fixture.bundleKey, 'timestamp:0\tfile:SHA256SUMS'));
    return [...listed, { name: `${TOP}/SHA256SUMS`, data: sums, mode: 0o100644 }, { name: `${TOP}/SHA256SUMS.minisig`, data: signature, mode: 0o100644 }];
  };

  before(async () => {
    fixture = await createFixtureAppliance();
    const built = await buildBundle(parseBundleRequest({ os: 'linux', arch: 'x64', address: 'ingest.example:9443', token: { mode: 'none' }, createdBy: 'tester' }), {
      dataDir: fixture.dataDir, outDir: join(fixture.root, 'out'), agentsDir: fixture.agentsDir, templatesDir: fixture.templatesDir,
    });
    bundle = built.path;
    original = await readEntries(bundle);
    key = parsePublicKeyFile(readFileSync(join(fixture.dataDir, 'bundle.pub'), 'utf8'));
  });
  after(() => rmSync(fixture.root, { recursive: true, force: true }));

  test('an untouched bundle verifies, and so does a faithful re-zip of it', async () => {
    const report = await verifyBundle(bundle, key);
    assert.deepEqual(report.problems, []);
    assert.equal(report.ok, true);
    assert.equal(report.exitCode, 0);
    assert.equal(report.files, 12);
    assert.equal(report.os, 'linux');
    assert.deepEqual((await verifyBundle(await modified((entries) => entries.reverse()), key)).problems, []);
  });

  test('a changed executable is reported as tampered (exit 65)', async () => {
    const report = await verifyBundle(await modified((entries) => entries.map((entry) => (entry.name === `${TOP}/ct-ops-agent` ? { ...entry, data: Buffer.from('#!/bin/sh\nevil\n') } : entry))), key);
    assert.deepEqual(codes(report.problems), ['ERR_BUNDLE_TAMPERED']);
    assert.equal(report.problems[0]!.path, `${TOP}/ct-ops-agent`);
    assert.match(report.problems[0]!.message, /does not match SHA256SUMS/);
    assert.equal(report.exitCode, 65);
  });

  test('a changed agent.toml is reported as tampered', async () => {
    const report = await verifyBundle(await modified((entries) => entries.map((entry) => (entry.name === `${TOP}/agent.toml` ? { ...entry, data: Buffer.concat([entry.data, Buffer.from('[x]\n')]) } : entry))), key);
    assert.deepEqual(report.problems.map((problem) => [problem.code, problem.path]), [['ERR_BUNDLE_TAMPERED', `${TOP}/agent.toml`]]);
  });

  test('an extra file and a missing file are each reported', async () => {
    const extra = await verifyBundle(await modified((entries) => [...entries, { name: `${TOP}/postinstall.sh`, data: Buffer.from('#!/bin/sh\n'), mode: 0o100755 }]), key);
    assert.deepEqual(extra.problems.map((problem) => [problem.code, problem.path]), [['ERR_BUNDLE_TAMPERED', `${TOP}/postinstall.sh`]]);
    assert.match(extra.problems[0]!.message, /not in SHA256SUMS/);
    const nested = await verifyBundle(await modified((entries) => [...entries, { name: `${TOP}/sub/x`, data: Buffer.from('x'), mode: 0o100644 }]), key);
    assert.deepEqual(codes(nested.problems), ['ERR_BUNDLE_TAMPERED']);
    const missing = await verifyBundle(await modified((entries) => entries.filter((entry) => entry.name !== `${TOP}/ca.crt`)), key);
    assert.deepEqual(missing.problems.map((problem) => [problem.code, problem.path]), [['ERR_BUNDLE_TAMPERED', `${TOP}/ca.crt`]]);
    assert.match(missing.problems[0]!.message, /missing/);
    assert.equal(missing.exitCode, 65);
  });

  test('path tricks, symlinks, odd modes and a second top folder are unsafe entries, duplicates ambiguous (exit 65)', async () => {
    const cases: Array<[string, (entries: Entry[]) => Entry[], ((path: string) => void)?]> = [
      ['traversal', (entries) => [...entries, { name: `${TOP}/aa/evil.sh`, data: Buffer.from('x'), mode: 0o100644 }], (path) => renameRaw(path, `${TOP}/aa/evil.sh`, `${TOP}/../evil.sh`)],
      ['absolute', (entries) => [...entries, { name: 'xetc/cron.d/evil', data: Buffer.from('x'), mode: 0o100644 }], (path) => renameRaw(path, 'xetc/cron.d/evil', '/etc/cron.d/evil')],
      ['backslash', (entries) => [...entries, { name: `${TOP}/aa_evil`, data: Buffer.from('x'), mode: 0o100644 }], (path) => renameRaw(path, `${TOP}/aa_evil`, `${TOP}/..\\evil`)],
      ['symlink', (entries) => [...entries, { name: `${TOP}/link`, data: Buffer.from('/etc/shadow'), mode: 0o120777 }]],
      ['setuid', (entries) => entries.map((entry) => (entry.name === `${TOP}/ct-ops-agent` ? { ...entry, mode: 0o104755 } : entry))],
      ['duplicate', (entries) => [...entries, { ...entries.find((entry) => entry.name === `${TOP}/agent.toml`)!, data: Buffer.from('[agent]\n') }]],
      ['case-duplicate', (entries) => [...entries, { name: `${TOP}/Agent.toml`, data: Buffer.from('x'), mode: 0o100644 }]],
      ['second top folder', (entries) => [...entries, { name: 'other/file', data: Buffer.from('x'), mode: 0o100644 }]],
      ['root file', (entries) => [...entries, { name: 'evil.sh', data: Buffer.from('x'), mode: 0o100644 }]],
      ['bidi override and C1 control', (entries) => [...entries, { name: `${TOP}/evil\u202e\u009bhs.sh`, data: Buffer.from('x'), mode: 0o100644 }]],
    ];
    for (const [label, change, patch] of cases) {
      const path = await modified(change);
      patch?.(path);
      const report = await verifyBundle(path, key);
      const expected = label.endsWith('duplicate') ? 'ERR_BUNDLE_ZIP_AMBIGUOUS' : 'ERR_BUNDLE_ENTRY_INVALID';
      assert.equal(report.problems[0]?.code, expected, `${label}: ${JSON.stringify(report.problems)}`);
      assert.equal(report.exitCode, 65, label);
      assert.equal(report.ok, false, label);
    }
  });

  test('a wrong public key, a forged signature and a re-written SHA256SUMS are signature failures (exit 77)', async () => {
    const foreign = signingKeyFromSeed(new Uint8Array(32).fill(9));
    const wrongKey = await verifyBundle(bundle, foreign);
    assert.deepEqual(codes(wrongKey.problems), ['ERR_BUNDLE_SIGNATURE_INVALID']);
    assert.match(wrongKey.problems[0]!.message, /signed by key/);
    assert.equal(wrongKey.exitCode, 77);

    const forged = await verifyBundle(
      await modified((entries) => entries.map((entry) => {
        if (!entry.name.endsWith('/SHA256SUMS.minisig')) return entry;
        const lines = entry.data.toString('utf8').split('\n');
        const raw = Buffer.from(lines[1]!, 'base64');
        raw[20] = raw[20]! ^ 0xff;
        lines[1] = raw.toString('base64');
        return { ...entry, data: Buffer.from(lines.join('\n')) };
      })),
      key,
    );
    assert.deepEqual(codes(forged.problems), ['ERR_BUNDLE_SIGNATURE_INVALID']);

    // The attacker swaps the executable and rewrites SHA256SUMS to match, but cannot sign it.
    const rewritten = await verifyBundle(
      await modified((entries) => {
        const evil = Buffer.from('#!/bin/sh\nevil\n');
        return entries.map((entry) => {
          if (entry.name === `${TOP}/ct-ops-agent`) return { ...entry, data: evil };
          if (entry.name === `${TOP}/SHA256SUMS`) return { ...entry, data: Buffer.from(entry.data.toString('utf8').replace(/^[0-9a-f]{64}(?=  ct-ops-agent\n)/m, sha256Hex(evil))) };
          return entry;
        });
      }),
      key,
    );
    assert.deepEqual(codes(rewritten.problems), ['ERR_BUNDLE_SIGNATURE_INVALID']);
    const unsigned = await verifyBundle(await modified((entries) => entries.filter((entry) => !entry.name.endsWith('.minisig'))), key);
    assert.deepEqual(codes(unsigned.problems), ['ERR_BUNDLE_SIGNATURE_INVALID']);
    assert.equal(STATUS.ERR_BUNDLE_SIGNATURE_INVALID.exit, 77);
  });

  test('a manifest that disagrees with the signed SHA256SUMS is tampered even when correctly signed', async () => {
    const report = await verifyBundle(
      await modified((entries) =>
        resealed(entries.map((entry) => {
          if (!entry.name.endsWith('/manifest.json')) return entry;
          const manifest = JSON.parse(entry.data.toString('utf8'));
          manifest.files.find((file: { path: string }) => file.path === 'ct-ops-agent').sha256 = '0'.repeat(64);
          manifest.os = 'windows';
          return { ...entry, data: Buffer.from(JSON.stringify(manifest)) };
        })),
      ),
      key,
    );
    assert.deepEqual(codes(report.problems), ['ERR_BUNDLE_TAMPERED']);
    assert.ok(report.problems.some((problem) => /ct-ops-agent sha256/.test(problem.message)));
    assert.ok(report.problems.some((problem) => /top folder/.test(problem.message)));
    assert.ok(report.problems.every((problem) => problem.path === `${TOP}/manifest.json`));
  });

  test('an extracted bundle folder verifies; an extra file, a subfolder, a symlink, a FIFO, a changed mode or a changed byte in it is refused', async () => {
    const extracted = join(fixture.root, 'extracted');
    mkdirSync(extracted);
    assert.equal(spawnSync('unzip', ['-q', bundle, '-d', extracted]).status, 0);
    const folder = join(extracted, TOP);
    const clean = await verifyBundle(folder, key);
    assert.deepEqual(clean.problems, []);
    assert.equal(clean.files, 12);
    assert.equal(clean.topFolder, TOP);

    const cases: Array<[string, (copy: string) => void, string, string]> = [
      ['an extra file', (copy) => writeFileSync(join(copy, 'postinstall.sh'), '#!/bin/sh\n', { mode: 0o755 }), 'ERR_BUNDLE_TAMPERED', `${TOP}/postinstall.sh`],
      ['a subfolder', (copy) => mkdirSync(join(copy, 'hooks')), 'ERR_BUNDLE_TAMPERED', `${TOP}/hooks/`],
      ['a symlink to a file with the right content', (copy) => {
        writeFileSync(join(copy, '..', 'agent.toml.real'), readFileSync(join(copy, 'agent.toml')));
        rmSync(join(copy, 'agent.toml'));
        symlinkSync('../agent.toml.real', join(copy, 'agent.toml'));
      }, 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/agent.toml`],
      ['a FIFO (must not hang the verifier)', (copy) => assert.equal(spawnSync('mkfifo', [join(copy, 'pipe')]).status, 0), 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/pipe`],
      ['a world-writable install.sh', (copy) => chmodSync(join(copy, 'install.sh'), 0o777), 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/install.sh`],
      // What bsdtar or `unzip -X` extract as root from a zip naming another owner: that user could rewrite it after it verified.
      ['install.sh owned by another user', (copy) => chownSync(join(copy, 'install.sh'), 1000, 1000), 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/install.sh`],
      ['install.sh with a second hard link outside the folder', (copy) => linkSync(join(copy, 'install.sh'), join(copy, '..', 'install.sh.link')), 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/install.sh`],
      ['the folder itself writable by its group', (copy) => chmodSync(copy, 0o775), 'ERR_BUNDLE_ENTRY_INVALID', `${TOP}/`],
      ['an executable that lost its execute bit', (copy) => chmodSync(join(copy, 'ct-ops-agent'), 0o644), 'ERR_BUNDLE_TAMPERED', `${TOP}/manifest.json`],
      ['a changed byte in agent.toml', (copy) => {
        const data = readFileSync(join(copy, 'agent.toml'));
        data[0] = data[0]! ^ 1;
        writeFileSync(join(copy, 'agent.toml'), data);
      }, 'ERR_BUNDLE_TAMPERED', `${TOP}/agent.toml`],
    ];
    for (const [label, change, code, path] of cases) {
      const parent = join(fixture.root, `folder-${++counter}`);
      mkdirSync(parent);
      assert.equal(spawnSync('cp', ['-a', folder, parent]).status, 0);
      const copy = join(parent, TOP);
      change(copy);
      const report = await verifyBundle(copy, key);
      assert.deepEqual([report.problems[0]?.code, report.problems[0]?.path], [code, path], `${label}: ${JSON.stringify(report.problems)}`);
      assert.equal(report.ok, false, label);
      assert.equal(report.exitCode, 65, label);
    }
    const fifo = join(fixture.root, 'bundle-fifo.zip');
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
    assert.deepEqual((await verifyBundle(fifo, key)).problems.map((problem) => [problem.code, problem.reason]), [['ERR_BUNDLE_ENTRY_INVALID', 'not-a-zip']], 'a FIFO given as the bundle is refused, not waited on');
    const cli = runVerify([folder, '--pubkey', join(fixture.dataDir, 'bundle.pub')]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /^OK: .*all 12 files match SHA256SUMS/m);
  });

  test('the CLI prints a verdict and exits 0, 65, 66 or 77; --json gives ok and problems', async () => {
    const pub = join(fixture.dataDir, 'bundle.pub');
    const ok = runVerify([bundle, '--pubkey', pub]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /^OK: .*signed by bundle key [0-9A-F]{16}; all 12 files match SHA256SUMS/m);
    assert.equal(ok.stderr, '', 'quiet when piped');

    const tampered = await modified((entries) => entries.filter((entry) => !entry.name.endsWith('/README.md')));
    const failed = runVerify([tampered, '--pubkey', pub]);
    assert.equal(failed.code, 65);
    assert.match(failed.stdout, /^FAILED: .*ERR_BUNDLE_TAMPERED.*do not install/m);
    const json = runVerify([tampered, '--pubkey', pub, '--json']);
    assert.equal(json.code, 65);
    const parsed = JSON.parse(json.stdout);
    assert.equal(parsed.ok, false);
    assert.equal(parsed.exit_code, 65);
    assert.deepEqual(parsed.problems.map((problem: VerifyProblem) => problem.code), ['ERR_BUNDLE_TAMPERED']);

    const otherPub = join(fixture.root, 'other.pub');
    writeFileSync(otherPub, readFileSync(join(fixture.dataDir, 'release.pub')));
    assert.equal(runVerify([bundle, '--pubkey', otherPub]).code, 77);
    assert.equal(runVerify([join(fixture.root, 'absent.zip'), '--pubkey', pub]).code, 66);
    assert.equal(runVerify([bundle, '--pubkey', join(fixture.root, 'absent.pub')]).code, 66);
    writeFileSync(join(fixture.root, 'junk.zip'), 'not a zip at all');
    const junk = runVerify([join(fixture.root, 'junk.zip'), '--pubkey', pub, '--json']);
    assert.equal(junk.code, 65);
    assert.equal(JSON.parse(junk.stdout).problems[0].code, 'ERR_BUNDLE_ENTRY_INVALID');
    const hostileName = await modified((entries) => [...entries, { name: `${TOP}/evil\u202e\u009b2Jhs.sh`, data: Buffer.from('x'), mode: 0o100644 }]);
    for (const args of [[hostileName, '--pubkey', pub], [hostileName, '--pubkey', pub, '--json']]) {
      const shown = runVerify(args);
      assert.equal(shown.code, 65);
      assert.match(shown.stdout, /evil\\u202e\\u009b2Jhs\.sh/, 'the name is shown escaped');
      assert.match(shown.stdout, /^[\n\x20-\x7e]*$/, 'nothing but printable ASCII reaches the terminal');
    }
    assert.equal(runVerify([]).code, 64);
  });
});
