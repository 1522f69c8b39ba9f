import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { checkAgentText, escapeForTerminal, escapeUnsafeJson } from '../common/agent-text.ts';
import { CtOpsError, GrpcCode } from '../common/errors.ts';
import type { TaskUpdate } from '../common/proto.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { callRegister, ingestClient, newIdentity, signedRegister, type HeartbeatStream } from './helpers/ingest-client.ts';
import { chunksOf, packages, submitScan } from './helpers/inventory.ts';
import { lengthDelimited, rawGrpcCall } from './helpers/raw-grpc.ts';
import { waitFor } from './helpers/wait.ts';

/** The reproduction from issue 8: set the window title, clear the screen, paint fake red text. */
const TERMINAL_ATTACK = '\x1b]0;PWNED\x07\x1b[2J\x1b[31mFAKE';
/** What no terminal view may print raw: C0 except tab and line feed, DEL, C1, bidi formatting, U+2028/9, lone surrogates. */
const RAW_UNSAFE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]|\p{Cs}/u;

type TaskJson = Record<string, unknown> & { id: string; state: string; output: string | null };

/** The body of one authenticated GET of the admin API, as the bytes arrived (decoded as UTF-8). */
function httpsText(port: number, ca: string, path: string, bearer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host: 'localhost', port, path, ca, headers: { authorization: `Bearer ${bearer}` } }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve(text));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('untrusted agent text is refused at the ingest edge', () => {
  const ingest = useIngestFixture();
  const grpcPort = (): number => ingest.appliance.grpcPort;
  const ca = (): string => ingest.appliance.caCert;

  test('a heartbeat whose agent_version carries OSC and CSI escapes ends the stream with ERR_INVALID_ARGUMENT naming the field', async () => {
    const { hostId, jwt } = await ingest.enrol();
    const stream = await ingest.openStream(hostId, jwt);
    stream.send(hostId, 2, { agent_version: TERMINAL_ATTACK });
    const ended = await stream.ended;
    assert.equal(ended.code, GrpcCode.INVALID_ARGUMENT);
    assert.match(ended.details, /^ERR_INVALID_ARGUMENT: HeartbeatRequest\.agent_version contains U\+001B/);
    const host = await ingest.appliance.host(hostId);
    assert.doesNotMatch(String(host.agent_version), /\x1b/, 'nothing of the refused heartbeat was stored');
  });

  /** A config_reload task pushed to a live stream, for reports against it. */
  async function liveTask(): Promise<{ hostId: string; stream: HeartbeatStream; taskId: string }> {
    const { hostId, jwt } = await ingest.enrol();
    const stream = await ingest.openStream(hostId, jwt);
    const queued = await ingest.appliance.cliJson<TaskJson>('hosts', 'reload-config', hostId);
    await waitFor('task pushed', () => stream.received.some((message) => message.task?.task_id === queued.id));
    return { hostId, stream, taskId: queued.id };
  }

  async function reportRefused(update: Omit<TaskUpdate, 'task_id'>, field: string): Promise<void> {
    const { hostId, stream, taskId } = await liveTask();
    stream.send(hostId, 2, { task_updates: [{ task_id: taskId, ...update }] });
    // Screened on the stream before it reaches the tasks: logged by the aggregated refusal log, without a stack.
    const refused = await ingest.appliance.process.waitForLog('ingest refused', { host_id: hostId, what: 'task report' });
    assert.equal(refused.code, 'ERR_INVALID_ARGUMENT');
    assert.match(String(refused.message), new RegExp(`^TaskUpdate\\.${field}\\b`));
    assert.equal((await ingest.appliance.cliJson<TaskJson>('tasks', 'show', taskId)).state, 'sent', 'the refused report moved nothing');
  }

  test('a task report whose message clears the screen and rewrites lines is refused with ERR_INVALID_ARGUMENT', async () => {
    await reportRefused({ phase: 'TASK_PHASE_SUCCEEDED', message: 'done\x1b[2J\x1b[Hstate: succeeded\r\n' }, 'message');
  });

  test('a task result whose JSON escapes a CSI (\\u009b) or an ESC is refused: parsed strings are checked too', async () => {
    await reportRefused({ phase: 'TASK_PHASE_SUCCEEDED', result_json: '{"note":"\\u009b2J"}' }, 'result_json');
    await reportRefused({ phase: 'TASK_PHASE_FAILED', error_code: 'ERR_TASK_FAILED', result_json: '{"\\u001b[31mkey":1}' }, 'result_json');
  });

  test('multi-line task output is accepted, stored as sent, and printed by `tasks show` on one line', async () => {
    const { hostId, stream, taskId } = await liveTask();
    const output = 'reloaded\nstate: failed\tfake line';
    stream.send(hostId, 2, { task_updates: [{ task_id: taskId, phase: 'TASK_PHASE_SUCCEEDED', message: output }] });
    await waitFor('succeeded', async () => (await ingest.appliance.cliJson<TaskJson>('tasks', 'show', taskId)).state === 'succeeded');
    assert.equal((await ingest.appliance.cliJson<TaskJson>('tasks', 'show', taskId)).output, output, '--json keeps the value');
    const shown = await ingest.appliance.cli('tasks', 'show', taskId);
    assert.ok(shown.stdout.includes('output: reloaded\\nstate: failed\\tfake line\n'), shown.stdout);
    assert.doesNotMatch(shown.stdout, /^state: failed/m, 'the agent cannot draw a line of its own');
  });

  test('a package name with U+202E (right-to-left override) and a version with the C1 CSI U+009B are never stored: skipped and counted', async () => {
    const { hostId, jwt } = await ingest.enrol();
    for (const [extra, field] of [[{ name: 'evil\u202Egnp.exe' }, 'name'], [{ version: '1.0\u009b2J' }, 'version'], [{ publisher: 'Acme\u2066Corp' }, 'publisher']] as const) {
      // Nothing but such packages: nothing storable, so the scan is refused like an empty one.
      const outcome = await submitScan(ingest.client, jwt, chunksOf(hostId, `scn_text_${field}_0001`, packages(0, 3, extra)));
      assert.equal(outcome.ok ? GrpcCode.OK : outcome.code, GrpcCode.INVALID_ARGUMENT);
      assert.match(outcome.ok ? '' : outcome.details, new RegExp(`^ERR_INVALID_ARGUMENT: a scan with no storable packages .*\\(skipped: ${field}_unsafe_text 3\\)$`));
    }
  });

  test('Register refuses control characters in a tag value and bidi characters in the hostname', async () => {
    const { token } = await ingest.appliance.createToken();
    const tagged = await callRegister(ingest.client, signedRegister(newIdentity(), token, { tags: { team: `ops${TERMINAL_ATTACK}` } }));
    assert.match(tagged.ok ? '' : tagged.details, /^ERR_INVALID_ARGUMENT: RegisterRequest\.tags contains U\+001B/);
    const named = await callRegister(ingest.client, signedRegister(newIdentity('web\u202E01'), token));
    assert.match(named.ok ? '' : named.details, /^ERR_INVALID_ARGUMENT: RegisterRequest\.hostname contains U\+202E/);
  });

  test('invalid UTF-8 in a Register string is refused by field, not silently replaced with U+FFFD', async () => {
    const cases: Array<[Buffer, RegExp]> = [
      [lengthDelimited(3, Buffer.from([0x77, 0x65, 0x62, 0xff, 0x30])), /RegisterRequest\.hostname is not valid UTF-8/],
      // A lone surrogate (U+D800) encoded as UTF-8 bytes: well-formed UTF-8 never holds one.
      [lengthDelimited(3, Buffer.from([0x77, 0xed, 0xa0, 0x80])), /RegisterRequest\.hostname is not valid UTF-8/],
      [lengthDelimited(7, Buffer.from([0xc3, 0x28])), /RegisterRequest\.agent_version is not valid UTF-8/],
      // A map entry (key 1, value 2) whose value is cut in the middle of a character.
      [lengthDelimited(11, Buffer.concat([lengthDelimited(1, Buffer.from('team')), lengthDelimited(2, Buffer.from([0x6f, 0x70, 0xe2, 0x82]))])), /RegisterRequest\.tags is not valid UTF-8/],
    ];
    for (const [body, message] of cases) {
      const outcome = await rawGrpcCall(grpcPort(), ca(), 'Register', [body]);
      assert.equal(outcome.status, String(GrpcCode.INVALID_ARGUMENT), `${body.toString('hex')}: ${outcome.message}`);
      assert.match(outcome.message ?? '', new RegExp(`^ERR_INVALID_ARGUMENT: ${message.source}`));
    }
  });

  test('invalid UTF-8 in a nested field (an inventory package name) is never stored, not silently replaced with U+FFFD: the package is skipped and counted', async () => {
    const { hostId, jwt } = await ingest.enrol();
    const isLast = Buffer.from([(6 << 3) | 0, 1]);
    const chunk = Buffer.concat([lengthDelimited(1, Buffer.from(hostId)), lengthDelimited(2, Buffer.from('scn_utf8_0001')), lengthDelimited(5, lengthDelimited(1, Buffer.from([0x70, 0x6b, 0x67, 0x80]))), isLast]);
    const outcome = await rawGrpcCall(grpcPort(), ca(), 'SubmitSoftwareInventory', [chunk], { authorization: `Bearer ${jwt}` });
    assert.equal(outcome.status, String(GrpcCode.INVALID_ARGUMENT), outcome.message);
    assert.match(outcome.message ?? '', /^ERR_INVALID_ARGUMENT: a scan with no storable packages .*\(skipped: invalid_utf8 1\)$/);
  });

  test('a text field sent with a varint wire type is refused, not skipped by the UTF-8 check while protobufjs decodes it as a string', async () => {
    // Tag (3 << 3) | 0, then 3 bytes "(\x80A": protobufjs reads field 3 by number as the string "(\uFFFDA".
    const hostnameAsVarint = Buffer.from([(3 << 3) | 0, 0x03, 0x28, 0x80, 0x41]);
    const register = await rawGrpcCall(grpcPort(), ca(), 'Register', [hostnameAsVarint]);
    assert.equal(register.status, String(GrpcCode.INVALID_ARGUMENT), register.message);
    assert.match(register.message ?? '', /^ERR_INVALID_ARGUMENT: RegisterRequest\.hostname has wire type 0, not length-delimited/);

    const { hostId, jwt } = await ingest.enrol();
    const head = Buffer.concat([lengthDelimited(1, Buffer.from(hostId)), lengthDelimited(2, Buffer.from('scn_wire_0001'))]);
    const badName = Buffer.from([0x70, 0x6b, 0x67, 0x80]);
    const badPackage = lengthDelimited(1, badName);
    const cases: Array<[Buffer, RegExp]> = [
      // The packages field itself as a varint, holding a package whose name is invalid UTF-8.
      [Buffer.concat([head, Buffer.from([(5 << 3) | 0, badPackage.length]), badPackage]), /SoftwareInventoryChunk\.packages has wire type 0/],
      // A well-framed package whose name field is a varint.
      [Buffer.concat([head, lengthDelimited(5, Buffer.concat([Buffer.from([(1 << 3) | 0, badName.length]), badName]))]), /SoftwareInventoryChunk\.packages\.name has wire type 0/],
    ];
    for (const [chunk, message] of cases) {
      const outcome = await rawGrpcCall(grpcPort(), ca(), 'SubmitSoftwareInventory', [chunk], { authorization: `Bearer ${jwt}` });
      assert.equal(outcome.status, String(GrpcCode.INVALID_ARGUMENT), `${chunk.toString('hex')}: ${outcome.message}`);
      assert.match(outcome.message ?? '', new RegExp(`^ERR_INVALID_ARGUMENT: ${message.source}`));
    }
  });

  test('malformed protobuf on each RPC (unary Register, Heartbeat stream, inventory stream) is INVALID_ARGUMENT with our details, not INTERNAL', async () => {
    const { jwt } = await ingest.enrol();
    const malformed = [
      Buffer.from([0x1a, 0x05, 0x41]), // field 3 claims 5 bytes, 1 follows
      Buffer.from([0x0f, 0x01]), // wire type 7 does not exist
      Buffer.from([0x08, 0xff, 0xff, 0xff]), // a varint that never ends
    ];
    for (const method of ['Register', 'Heartbeat', 'SubmitSoftwareInventory']) {
      for (const body of malformed) {
        const outcome = await rawGrpcCall(grpcPort(), ca(), method, [body], method === 'Register' ? {} : { authorization: `Bearer ${jwt}` });
        assert.equal(outcome.status, String(GrpcCode.INVALID_ARGUMENT), `${method} ${body.toString('hex')}: ${outcome.status} ${outcome.message}`);
        assert.match(outcome.message ?? '', /^ERR_INVALID_ARGUMENT: \w+ is not a valid protobuf message/);
      }
    }
    assert.ok(ingest.appliance.process.running);
  });
});

describe('CLI views never print raw control or bidirectional characters', () => {
  test('text stored before the edge refused it (an older appliance) is escaped by hosts list/show/packages and tasks list/show, in tables and --json', async () => {
    const appliance = await TestAppliance.start();
    try {
      const { token } = await appliance.createToken('--auto-approve');
      const client = ingestClient(appliance.address, appliance.caCert);
      const registered = await callRegister(client, signedRegister(newIdentity('web-01'), token));
      client.close();
      assert.ok(registered.ok);
      const hostId = registered.value.agent_id;
      const task = await appliance.cliJson<TaskJson>('hosts', 'reload-config', hostId);
      await appliance.stop();
      // What an appliance from before this check could have stored: written while no appliance runs.
      const stored = {
        hostname: 'web\u202E10-bew',
        agent_version: TERMINAL_ATTACK,
        output: 'done\x1b[2J\x1b[H\r\nstate: succeeded\u009b31m\u2028',
        tag: '\u2067ops\u2069\x07',
      };
      const db = new Database(join(appliance.dataDir, 'appliance.db'));
      db.prepare('UPDATE hosts SET hostname = ?, agent_version = ?, tags = ? WHERE id = ?').run(stored.hostname, stored.agent_version, JSON.stringify({ team: stored.tag }), hostId);
      db.prepare("UPDATE tasks SET state = 'failed', output = ?, error_code = ?, finished_at = 1 WHERE id = ?").run(stored.output, `ERR_X${TERMINAL_ATTACK}`, task.id);
      db.prepare("INSERT INTO software_packages (host_id, name, version, source, architecture, publisher, first_seen, last_seen, last_seen_scan) VALUES (?, ?, ?, 'dpkg', 'amd64', '', 1, 1, 0)").run(hostId, 'evil\u202Egnp.exe', '1.0\u009b2J');
      db.close();
      const restarted = await TestAppliance.start({ dataDir: appliance.dataDir });
      try {
        for (const args of [['hosts', 'list'], ['hosts', 'show', hostId], ['hosts', 'packages', hostId], ['tasks', 'list'], ['tasks', 'show', task.id]]) {
          for (const json of [false, true]) {
            const printed = await restarted.cli(...args, ...(json ? ['--json'] : []));
            assert.equal(printed.code, 0, printed.stderr);
            assert.doesNotMatch(printed.stdout, RAW_UNSAFE, `${args.join(' ')}${json ? ' --json' : ''} printed a raw unsafe character`);
            if (json) JSON.parse(printed.stdout);
          }
        }
        const api = await httpsText(restarted.httpPort, restarted.caCert, `/api/v1/hosts/${hostId}`, readFileSync(join(restarted.dataDir, 'admin-cli.token'), 'utf8').trim());
        assert.doesNotMatch(api, RAW_UNSAFE, 'the admin API answers JSON without raw unsafe characters');
        assert.equal(JSON.parse(api).agent_version, stored.agent_version);
        const host = await restarted.host(hostId);
        assert.deepEqual([host.hostname, host.agent_version], [stored.hostname, stored.agent_version], '--json parses back to the stored value');
        const shown = await restarted.cli('tasks', 'show', task.id);
        assert.ok(shown.stdout.includes('output: done\\x1b[2J\\x1b[H\\r\\nstate: succeeded\\x9b31m\\u2028\n'), shown.stdout);
        const packagesShown = await restarted.cli('hosts', 'packages', hostId);
        assert.ok(packagesShown.stdout.includes('evil\\u202egnp.exe') && packagesShown.stdout.includes('1.0\\x9b2J'), packagesShown.stdout);
        const listed = await restarted.cli('hosts', 'list');
        assert.ok(listed.stdout.includes('web\\u202e10-bew') && listed.stdout.includes('\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mFAKE'), listed.stdout);
      } finally {
        await restarted.dispose();
        await appliance.dispose();
      }
    } catch (error) {
      await appliance.dispose();
      throw error;
    }
  });
});

describe('the agent text rule', () => {
  const refusal = (value: string, multiline = false): string | undefined => {
    try {
      checkAgentText(value, 'X.field', { max: 64, multiline }, { field: 'field' });
      return undefined;
    } catch (error) {
      assert.ok(error instanceof CtOpsError);
      assert.equal(error.code, 'ERR_INVALID_ARGUMENT');
      return error.message;
    }
  };

  test('refuses C0, DEL, C1, bidi embeddings/overrides/isolates, line separators and lone surrogates; allows tab and line breaks only in multi-line text', () => {
    for (const bad of ['a\x1bb', 'a\x00', 'a\x7f', 'a\x9b', 'a\x85', 'a\u202Ab', 'a\u202Eb', 'a\u2066', 'a\u2069', 'a\u2028', 'a\ud800', 'a\udc00b']) {
      assert.match(refusal(bad) ?? 'accepted', /^X\.field contains U\+/, JSON.stringify(bad));
    }
    assert.match(refusal('a\nb') ?? 'accepted', /U\+000A/);
    assert.equal(refusal('a\tb\r\nc', true), undefined);
    assert.match(refusal('a\x1b[2Jb\n', true) ?? 'accepted', /U\+001B/);
    assert.equal(refusal('Ünïcödé 名前 😀 (1.0~rc1+dfsg)'), undefined);
    assert.equal(refusal('\u200Fשלום\u200E Ltd'), undefined, 'bidirectional marks in real right-to-left names are allowed');
    assert.match(refusal('x'.repeat(65)) ?? 'accepted', /is longer than 64 characters/);
  });

  test('terminal escaping shows every unsafe character visibly and keeps JSON valid and equal', () => {
    assert.equal(escapeForTerminal(TERMINAL_ATTACK), '\\x1b]0;PWNED\\x07\\x1b[2J\\x1b[31mFAKE');
    assert.equal(escapeForTerminal('a\u202Eb\ud800\n'), 'a\\u202eb\\ud800\\n');
    const value = { text: 'a\u009b\u202E\u2028\x7fb\x1b' };
    const json = escapeUnsafeJson(JSON.stringify(value));
    assert.doesNotMatch(json, RAW_UNSAFE);
    assert.deepEqual(JSON.parse(json), value);
  });
});
