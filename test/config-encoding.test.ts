import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadAgentConfig } from '../agent/config/load.ts';
import { loadApplianceConfig } from '../appliance/config/load.ts';
import { CtOpsError } from '../common/errors.ts';
import { AGENT_BIN, APPLIANCE_BIN, REPO_ROOT, run } from './helpers/processes.ts';

const BUNDLER_BIN = join(REPO_ROOT, 'dist/ct-ops-bundle.js');

const AGENT_TOML = '[ingest]\naddress = "ingest.example:9443"\n\n[agent]\norg_token = "tok_x"\ntags = { site = "Zürich" }\n';
const APPLIANCE_TOML = 'grpc_port = 1001\nsans = ["bücher.example"]\n';

function utf16be(text: string): Buffer {
  return Buffer.from(text, 'utf16le').swap16();
}

function utf32le(text: string): Buffer {
  const bytes = Buffer.alloc(text.length * 4);
  [...text].forEach((char, index) => bytes.writeUInt32LE(char.codePointAt(0)!, index * 4));
  return bytes;
}

/** What editors write when asked for "Unicode" or a legacy code page, with the encoding the error must name. */
function undecodable(text: string): ReadonlyArray<readonly [string, Buffer, string]> {
  return [
    ['UTF-16LE with BOM (Notepad "Unicode", PowerShell 5 ">")', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), 'UTF-16LE'],
    ['UTF-16BE with BOM', Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(text)]), 'UTF-16BE'],
    ['UTF-16LE without BOM', Buffer.from(text, 'utf16le'), 'UTF-16LE'],
    ['UTF-16BE without BOM', utf16be(text), 'UTF-16BE'],
    ['UTF-32LE with BOM', Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0x00]), utf32le(text)]), 'UTF-32LE'],
    ['UTF-32LE without BOM', utf32le(text), 'UTF-32LE'],
    ['UTF-32BE without BOM', utf32le(text).swap32(), 'UTF-32BE'],
    ['UTF-16LE without BOM, values in CJK', Buffer.from(`${text}note = "一二三四五六七八"\n`, 'utf16le'), 'UTF-16LE'],
    ['UTF-8 BOM followed by UTF-16LE text', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), 'UTF-16LE'],
  ];
}

/** UTF-8 with a BOM (PowerShell's Set-Content -Encoding utf8) and Windows line ends. */
function utf8BomCrlf(text: string): Buffer {
  return Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text.replaceAll('\n', '\r\n'), 'utf8')]);
}

const scratch = mkdtempSync(join(tmpdir(), 'ct-ops-config-encoding-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

function writeBytes(name: string, bytes: Buffer): string {
  const file = join(scratch, name);
  writeFileSync(file, bytes);
  return file;
}

/**
 * The refusal names the encoding and says how to write a converted copy beside the file: never a
 * command that overwrites it (a wrong guess would destroy the only copy).
 */
function expectEncodingError(run: () => unknown, file: string, encoding: string, label: string, code: CtOpsError['code'] = 'ERR_CONFIG_INVALID'): void {
  const name = basename(file);
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof CtOpsError, label);
    assert.equal(error.code, code, label);
    assert.deepEqual(error.details, { path: file, encoding }, label);
    assert.ok(error.message.startsWith(`${file} is not UTF-8 (${encoding})`), `${label}: ${error.message}`);
    assert.ok(error.message.includes(`It must be UTF-8: write a UTF-8 copy with iconv -f ${encoding} -t UTF-8 ${name} > ${name}.utf8 `), `${label}: ${error.message}`);
    assert.ok(error.message.includes(`Set-Content -Encoding utf8 ${name}.utf8), check it, then replace ${name} with it`), `${label}: ${error.message}`);
    assert.doesNotMatch(error.message, /&&|\bmv\b|illegal character/, label);
    return true;
  }, label);
}

describe('configuration files must be UTF-8, and the error says which encoding they are in and how to convert them', () => {
  test('agent.toml in UTF-16 or UTF-32, with or without BOM, is ERR_CONFIG_INVALID naming the encoding', () => {
    for (const [label, bytes, encoding] of undecodable(AGENT_TOML)) {
      const file = writeBytes('agent.toml', bytes);
      expectEncodingError(() => loadAgentConfig({ file, env: {} }), file, encoding, label);
    }
  });

  test('a legacy code page is named by the line that is not UTF-8, even after a real U+FFFD, with a copy written beside it', () => {
    const legacy = (bytes: Buffer, line: number, label: string) => {
      const file = writeBytes('agent.toml', bytes);
      assert.throws(() => loadAgentConfig({ file, env: {} }), (error: unknown) => {
        assert.ok(error instanceof CtOpsError && error.code === 'ERR_CONFIG_INVALID', label);
        assert.deepEqual(error.details, { path: file, line }, label);
        assert.ok(error.message.startsWith(`${file} is not UTF-8: line ${line} holds bytes that are not UTF-8 (a legacy code page such as Windows-1252?)`), error.message);
        assert.match(error.message, /iconv -f WINDOWS-1252 -t UTF-8 agent\.toml > agent\.toml\.utf8 .*then replace agent\.toml with it$/, label);
        assert.doesNotMatch(error.message, /&&|\bmv\b/, label);
        return true;
      }, label);
    };
    legacy(Buffer.from(AGENT_TOML, 'latin1'), 6, 'Windows-1252');
    legacy(Buffer.concat([Buffer.from('# note \uFFFD\na = 1\nb = 2\n', 'utf8'), Buffer.from('c = "café"\n', 'latin1')]), 4, 'a real U+FFFD on line 1');
    legacy(Buffer.concat([Buffer.from('a = 1\nb = "', 'utf8'), Buffer.from([0xe9]), Buffer.from('\n', 'utf8')]), 2, 'a sequence cut short by the line end');
  });

  test('a stray NUL byte in a UTF-8 file is named by its line, not taken for UTF-16, and no conversion is offered', () => {
    for (const at of [AGENT_TOML.indexOf('org_token'), AGENT_TOML.length - 1]) {
      const bytes = Buffer.concat([Buffer.from(AGENT_TOML.slice(0, at), 'utf8'), Buffer.from([0]), Buffer.from(AGENT_TOML.slice(at), 'utf8')]);
      const line = AGENT_TOML.slice(0, at).split('\n').length;
      const file = writeBytes('agent.toml', bytes);
      assert.throws(() => loadAgentConfig({ file, env: {} }), (error: unknown) => {
        assert.ok(error instanceof CtOpsError && error.code === 'ERR_CONFIG_INVALID');
        assert.deepEqual(error.details, { path: file, line });
        assert.equal(error.message, `${file}: line ${line} holds a NUL byte (byte ${Buffer.byteLength(AGENT_TOML.slice(0, at))}), which no text file has: remove it`);
        return true;
      });
    }
  });

  test('byte order marks: one UTF-8 mark is accepted; a second one, or a UTF-16 mark after it, is named', () => {
    const file = writeBytes('agent.toml', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]), Buffer.from(AGENT_TOML)]));
    assert.throws(() => loadAgentConfig({ file, env: {} }), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_CONFIG_INVALID' && error.message === `${file} starts with two UTF-8 byte order marks (EF BB BF): remove the second one`);
    const twice = writeBytes('agent.toml', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf, 0xff, 0xfe]), Buffer.from(AGENT_TOML, 'utf16le')]));
    assert.throws(() => loadAgentConfig({ file: twice, env: {} }), /is not UTF-8 \(UTF-16LE\): it starts with a UTF-8 byte order mark followed by the UTF-16LE one \(converted twice\?\)/);
  });

  test('other files people edit: a ca_cert_file, a --token-secret-file and a --pubkey in UTF-16 are named as such', async () => {
    const utf16 = (text: string) => Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]);
    const ca = writeBytes('ca16.crt', utf16('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'));
    const file = writeBytes('agent.toml', Buffer.from(`${AGENT_TOML.replace('[agent]', `ca_cert_file = ${JSON.stringify(ca)}\n\n[agent]`)}`));
    expectEncodingError(() => loadAgentConfig({ file, env: {} }), ca, 'UTF-16LE', 'ca_cert_file');

    const secret = writeBytes('secret16.txt', utf16(`tok_${'a'.repeat(43)}\n`));
    const build = await run(process.execPath, [BUNDLER_BIN, 'build', '--data-dir', join(scratch, 'none'), '--os', 'linux', '--arch', 'x64', '--address', 'ingest.example:9443', '--token', `etk_${'0'.repeat(20)}`, '--token-secret-file', secret], {}, 20_000);
    assert.equal(build.code, 64, build.stderr);
    assert.match(build.stderr, new RegExp(`ERR_USAGE: ${secret.replaceAll('.', '\\.')} is not UTF-8 \\(UTF-16LE\\): it starts with the UTF-16LE byte order mark`));

    const pubkey = writeBytes('bundle16.pub', utf16('untrusted comment: minisign public key\nRWQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n'));
    const verify = await run(process.execPath, [BUNDLER_BIN, 'verify', '--pubkey', pubkey, join(scratch, 'absent.zip')], {}, 20_000);
    assert.equal(verify.code, 64, verify.stderr);
    assert.match(verify.stderr, /ERR_USAGE: .*bundle16\.pub is not UTF-8 \(UTF-16LE\)/);
  });

  test('agent.toml in UTF-8 with a BOM and CRLF line ends loads', () => {
    const file = writeBytes('agent.toml', utf8BomCrlf(AGENT_TOML));
    const { config } = loadAgentConfig({ file, env: {} });
    assert.equal(config.ingest.addresses[0]!.target, 'ingest.example:9443');
    assert.deepEqual({ ...config.tags }, { site: 'Zürich' });
  });

  test("the appliance's TOML file: the same refusals, and UTF-8 with a BOM and CRLF loads", () => {
    for (const [label, bytes, encoding] of undecodable(APPLIANCE_TOML)) {
      const file = writeBytes('appliance.toml', bytes);
      expectEncodingError(() => loadApplianceConfig({ file, env: {}, flags: {} }), file, encoding, label);
    }
    const file = writeBytes('appliance.toml', utf8BomCrlf(APPLIANCE_TOML));
    const config = loadApplianceConfig({ file, env: {}, flags: {} });
    assert.equal(config.grpcPort, 1001);
    assert.deepEqual(config.sans, ['xn--bcher-kva.example']);
  });

  test('the real agent and appliance stop with exit 78 and say UTF-16LE and how to fix it', async () => {
    const [, agentBytes] = undecodable(AGENT_TOML)[0]!;
    const agentFile = writeBytes('agent-utf16.toml', agentBytes);
    const agent = await run(process.execPath, [AGENT_BIN, '-check', '-config', agentFile], {}, 20_000);
    assert.equal(agent.code, 78, agent.stdout + agent.stderr);
    assert.match(agent.stderr, new RegExp(`ERR_CONFIG_INVALID: ${agentFile} is not UTF-8 \\(UTF-16LE\\).*iconv -f UTF-16LE -t UTF-8 agent-utf16\\.toml > agent-utf16\\.toml\\.utf8`));

    const [, applianceBytes] = undecodable(APPLIANCE_TOML)[0]!;
    const applianceFile = writeBytes('appliance-utf16.toml', applianceBytes);
    const appliance = await run(process.execPath, [APPLIANCE_BIN, 'serve', '--config', applianceFile, '--data-dir', join(scratch, 'data'), '--grpc-port', '0', '--http-port', '0'], {}, 20_000);
    assert.equal(appliance.code, 78, appliance.stdout + appliance.stderr);
    assert.match(appliance.stderr, /ERR_CONFIG_INVALID: .*appliance-utf16\.toml is not UTF-8 \(UTF-16LE\).*Set-Content -Encoding utf8/);
  });
});
