import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { loadAgentConfig } from '../agent/config/load.ts';
import { loadApplianceConfig } from '../appliance/config/load.ts';
import { CtOpsError } from '../common/errors.ts';
import { AGENT_BIN, APPLIANCE_BIN, run } from './helpers/processes.ts';

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
    ['UTF-8 BOM followed by UTF-16LE text', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')]), 'UTF-16LE'],
    ['Windows-1252 / Latin-1', Buffer.from(text, 'latin1'), 'legacy code page'],
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

function expectEncodingError(run: () => unknown, file: string, encoding: string, label: string): void {
  assert.throws(run, (error: unknown) => {
    assert.ok(error instanceof CtOpsError, label);
    assert.equal(error.code, 'ERR_CONFIG_INVALID', label);
    assert.deepEqual(error.details, { path: file, encoding }, label);
    assert.ok(error.message.startsWith(`${file} is not UTF-8 (${encoding})`), `${label}: ${error.message}`);
    assert.match(error.message, /Configuration files must be UTF-8; save it as UTF-8: iconv -f \S+ -t UTF-8 /, label);
    assert.match(error.message, /Set-Content -Encoding utf8/, label);
    assert.doesNotMatch(error.message, /illegal character/, label);
    return true;
  }, label);
}

describe('configuration files must be UTF-8, and the error says which encoding they are in and how to convert them', () => {
  test('agent.toml in UTF-16 (with or without BOM), UTF-32 or a legacy code page is ERR_CONFIG_INVALID naming the encoding', () => {
    for (const [label, bytes, encoding] of undecodable(AGENT_TOML)) {
      const file = writeBytes('agent.toml', bytes);
      expectEncodingError(() => loadAgentConfig({ file, env: {} }), file, encoding, label);
    }
  });

  test('the legacy code page error names the line that is not UTF-8', () => {
    const file = writeBytes('agent.toml', Buffer.from(AGENT_TOML, 'latin1'));
    assert.throws(() => loadAgentConfig({ file, env: {} }), /line 6 holds bytes that are not UTF-8/);
  });

  test('agent.toml in UTF-8 with a BOM and CRLF line ends loads', () => {
    const file = writeBytes('agent.toml', utf8BomCrlf(AGENT_TOML));
    const { config } = loadAgentConfig({ file, env: {} });
    assert.equal(config.ingest.address.target, 'ingest.example:9443');
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
    assert.match(agent.stderr, new RegExp(`ERR_CONFIG_INVALID: ${agentFile} is not UTF-8 \\(UTF-16LE\\).*iconv -f UTF-16LE -t UTF-8 agent-utf16\\.toml`));

    const [, applianceBytes] = undecodable(APPLIANCE_TOML)[0]!;
    const applianceFile = writeBytes('appliance-utf16.toml', applianceBytes);
    const appliance = await run(process.execPath, [APPLIANCE_BIN, 'serve', '--config', applianceFile, '--data-dir', join(scratch, 'data'), '--grpc-port', '0', '--http-port', '0'], {}, 20_000);
    assert.equal(appliance.code, 78, appliance.stdout + appliance.stderr);
    assert.match(appliance.stderr, /ERR_CONFIG_INVALID: .*appliance-utf16\.toml is not UTF-8 \(UTF-16LE\).*Set-Content -Encoding utf8/);
  });
});
