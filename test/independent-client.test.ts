import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { codeFromGrpcDetails, GrpcCode } from '../common/errors.ts';
import { registerPayload } from '../common/register-payload.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { REPO_ROOT } from './helpers/processes.ts';
import { StopWaiting, waitFor } from './helpers/wait.ts';

/**
 * Debian's interpreter, not whatever python3 is first on PATH: the Debian packages
 * below install into it, and CI installs exactly those.
 */
const PYTHON = '/usr/bin/python3';
const APT_PACKAGES = 'python3-grpcio python3-protobuf python3-grpc-tools python3-cryptography';
const CLIENT_SCRIPT = join(REPO_ROOT, 'test/python/ingest_client.py');
const run = promisify(execFile);

interface SignedFields {
  public_key_hex: string;
  hostname: string;
  machine_fingerprint: string;
  os: string;
  arch: string;
  agent_version: string;
  register_challenge_hex: string;
  tags: Record<string, string>;
  payload_hex: string;
}

interface ClientResult {
  grpc_version: string;
  register: { agent_id: string; status: string; signed: SignedFields };
  acks: number[];
  bad_signature: { code: string; code_number: number; details: string };
}

/** Fails, never skips, when the Python toolchain is missing: the proof must not silently vanish. */
async function requirePythonGrpc(): Promise<void> {
  try {
    await run(PYTHON, ['-c', 'import grpc, grpc_tools.protoc, google.protobuf, cryptography']);
  } catch (error) {
    const reason = (error as { stderr?: string }).stderr?.trim() || String(error);
    throw new Error(`the independent client needs ${PYTHON} with Debian's ${APT_PACKAGES} (apt-get install -y ${APT_PACKAGES}): ${reason}`);
  }
}

/** The contract compiled by protoc itself, not by protobufjs: the client sees only what the .proto says. */
async function compileDescriptorSet(outDir: string): Promise<string> {
  const descriptorSet = join(outDir, 'ingest.pb');
  await run(PYTHON, ['-m', 'grpc_tools.protoc', '--include_imports', `--descriptor_set_out=${descriptorSet}`, '-I', 'proto', 'proto/ctops/ingest/v1/ingest.proto'], { cwd: REPO_ROOT });
  return descriptorSet;
}

/** The Python client as a child process whose stdout is JSON lines, one per event. */
class PythonClient {
  readonly child: ChildProcess;
  readonly events: Array<Record<string, unknown>> = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  #outputClosed = false;

  constructor(args: readonly string[]) {
    // -B: no __pycache__ left in the repository.
    this.child = spawn(PYTHON, ['-B', CLIENT_SCRIPT, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (partial + chunk).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) if (line.trim() !== '') this.events.push(JSON.parse(line) as Record<string, unknown>);
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    // 'close' comes after stdout is drained, so no event is still in flight then.
    this.exited = once(this.child, 'close').then(([code]) => {
      this.#outputClosed = true;
      return code as number | null;
    });
  }

  async waitForEvent(name: string): Promise<Record<string, unknown>> {
    return waitFor(`python client event "${name}"`, () => {
      const found = this.events.find((event) => event.event === name);
      if (!found && this.#outputClosed) throw new StopWaiting(`python client exited ${this.child.exitCode}: ${this.stderr.slice(-2000)}`);
      return found;
    }, 30_000);
  }

  /** Closing stdin tells the client to end its Heartbeat stream and finish. */
  endStream(): void {
    this.child.stdin!.end();
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

describe('an independent Python grpcio client, built only from ingest.proto, against a real appliance', () => {
  let appliance: TestAppliance;
  let workDir: string;
  let client: PythonClient | undefined;
  let token: string;
  let result: ClientResult;
  let hostWhileStreaming: Record<string, unknown> & { status: string };
  let hostsListed: Array<{ id: string; hostname: string }>;

  before(async () => {
    await requirePythonGrpc();
    workDir = mkdtempSync(join(tmpdir(), 'ct-ops-python-client-'));
    const descriptorSet = await compileDescriptorSet(workDir);
    appliance = await TestAppliance.start();
    token = (await appliance.createToken('--auto-approve')).token;
    client = new PythonClient(['--descriptor-set', descriptorSet, '--address', appliance.address, '--ca', appliance.caCertPath, '--token', token]);

    const streaming = await client.waitForEvent('streaming');
    const agentId = streaming.agent_id as string;
    // Three heartbeats within one 5 s interval store one vitals sample, written within about a second.
    hostWhileStreaming = await waitFor('one stored heartbeat', async () => {
      const shown = await appliance.host(agentId);
      return (shown.recent_vitals as unknown[]).length === 1 && shown;
    });
    hostsListed = await appliance.hosts();
    client.endStream();
    result = (await client.waitForEvent('result')) as unknown as ClientResult;
    assert.equal(await client.exited, 0, client.stderr);
  });

  after(async () => {
    client?.kill();
    await appliance?.dispose();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  test('it registers with a signature over the challenge payload it built byte-for-byte like ours, and is active at once', () => {
    const { agent_id: agentId, status, signed } = result.register;
    assert.equal(status, 'AGENT_STATUS_ACTIVE');
    const listed = hostsListed.find((host) => host.id === agentId);
    assert.ok(listed, `agent ${agentId} is not in hosts list`);
    assert.equal(listed.hostname, signed.hostname);
    const ours = registerPayload({
      publicKey: Buffer.from(signed.public_key_hex, 'hex'),
      orgToken: token,
      hostname: signed.hostname,
      machineFingerprint: signed.machine_fingerprint,
      os: signed.os,
      arch: signed.arch,
      agentVersion: signed.agent_version,
      tags: signed.tags,
      challenge: Buffer.from(signed.register_challenge_hex, 'hex'),
    });
    assert.equal(signed.payload_hex, Buffer.from(ours).toString('hex'));
  });

  test('its heartbeats are acknowledged by sequence, stored, and the host is online while it streams', () => {
    assert.deepEqual(result.acks, [1, 2, 3]);
    assert.equal(hostWhileStreaming.status, 'online');
    assert.equal((hostWhileStreaming.recent_vitals as Array<{ cpu_percent: number }>)[0]!.cpu_percent, 10, 'the first heartbeat of the interval is the one sample stored');
    assert.equal(hostWhileStreaming.heartbeat_interval_secs, 5);
  });

  test('a Register with a bad signature is refused UNAUTHENTICATED with ERR_REGISTER_SIGNATURE_INVALID', () => {
    const refused = result.bad_signature;
    assert.equal(refused.code, 'UNAUTHENTICATED');
    assert.equal(refused.code_number, GrpcCode.UNAUTHENTICATED);
    assert.ok(refused.details.startsWith('ERR_REGISTER_SIGNATURE_INVALID'), refused.details);
    assert.equal(codeFromGrpcDetails(refused.details), 'ERR_REGISTER_SIGNATURE_INVALID');
  });
});
