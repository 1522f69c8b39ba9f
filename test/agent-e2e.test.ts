import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { waitFor } from './helpers/wait.ts';

const SEED_LOG_SEQUENCE = ['agent identity ready', 'registering agent', 'registration response', 'agent registered and active', 'starting heartbeat', 'heartbeat stream opened'];

describe('the real agent process against the real appliance', () => {
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];

  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
  });

  function newAgent(orgToken: string | undefined, intervalSecs = 5): TestAgent {
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken, intervalSecs });
    agents.push(agent);
    return agent;
  }

  async function hostOf(agent: TestAgent): Promise<Record<string, unknown> & { status: string; id: string }> {
    const { agent_id } = agent.state();
    return { ...(await appliance.host(agent_id)), id: agent_id };
  }

  test('an auto-approved agent enrols, writes its identity files and streams heartbeats, logging the documented lines in order', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = newAgent(token);
    const proc = agent.start();
    await proc.waitForLog('heartbeat stream opened');
    const messages = proc.events.map((event) => event.msg);
    const positions = SEED_LOG_SEQUENCE.map((msg) => messages.indexOf(msg));
    assert.ok(positions.every((position, index) => position >= 0 && (index === 0 || position > positions[index - 1]!)), `log order: ${JSON.stringify(positions)}`);

    assert.equal(statSync(join(agent.dataDir, 'agent_key.pem')).mode & 0o777, 0o600);
    execFileSync('openssl', ['pkey', '-in', join(agent.dataDir, 'agent_key.pem'), '-noout']);
    const publicFromPrivate = execFileSync('openssl', ['pkey', '-in', join(agent.dataDir, 'agent_key.pem'), '-pubout'], { encoding: 'utf8' });
    assert.equal(publicFromPrivate, readFileSync(join(agent.dataDir, 'agent_key.pub'), 'utf8'));
    const state = agent.state();
    assert.match(state.agent_id, /^hst_/);

    const host = await waitFor('two stored heartbeats', async () => {
      const shown = await hostOf(agent);
      return (shown.recent_vitals as unknown[]).length >= 2 && shown;
    }, 15_000);
    assert.equal(host.status, 'online');
    for (const field of ['cpu_percent', 'memory_percent', 'disk_percent']) {
      assert.ok(typeof host[field] === 'number' && (host[field] as number) >= 0 && (host[field] as number) <= 100, field);
    }
    assert.ok((host.uptime_seconds as number) > 0);
    assert.ok(!proc.stdout.includes(token), 'the enrolment token never appears in the log');
    assert.ok(!proc.stdout.includes(agent.state().jwt), 'the JWT never appears in the log');
    assert.ok(!proc.stdout.includes('PRIVATE KEY'), 'the private key never appears in the log');
    await agent.stop();
  });

  test('a pending agent polls until an admin approves it, then streams', async () => {
    const { token } = await appliance.createToken();
    const agent = newAgent(token);
    const proc = agent.start();
    const response = await proc.waitForLog('registration response');
    assert.match(String(response.status), /pending/i);
    const host = (await appliance.hosts()).find((entry) => entry.id === response.agent_id);
    assert.equal(host?.status, 'pending');
    await proc.waitForLog('registration response', {}, 10_000, 2);
    assert.equal((await appliance.cli('hosts', 'approve', String(response.agent_id))).code, 0);
    await proc.waitForLog('heartbeat stream opened', {}, 10_000);
    await waitFor('online', async () => (await hostOf(agent)).status === 'online');
    await agent.stop();
  });

  test('a killed agent is offline at once; restarted with a valid JWT it skips registration; without agent_state.json it keeps its identity', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = newAgent(token);
    await agent.start().waitForLog('heartbeat stream opened');
    const { agent_id } = agent.state();
    await waitFor('online', async () => (await hostOf(agent)).status === 'online');
    const killedAt = Date.now();
    await agent.process!.stop('SIGKILL');
    await waitFor('offline within 2 × interval', async () => (await hostOf(agent)).status === 'offline', 10_000);
    assert.ok(Date.now() - killedAt < 10_000);

    const restarted = agent.start();
    await restarted.waitForLog('heartbeat stream opened');
    assert.equal(restarted.logged('registering agent').length, 0, 'a valid JWT skips registration');
    await agent.stop();

    rmSync(join(agent.dataDir, 'agent_state.json'));
    const reregistered = agent.start();
    await reregistered.waitForLog('heartbeat stream opened');
    assert.equal(reregistered.logged('registering agent').length, 1);
    assert.equal(agent.state().agent_id, agent_id, 'same keypair, same host');
    await agent.stop();

    rmSync(agent.dataDir, { recursive: true });
    // A fresh machine, not a reinstall on the same one (that would be held pending as a suspected clone).
    writeFileSync(agent.machineIdFile, 'a-different-machine\n');
    const { token: second } = await appliance.createToken('--auto-approve');
    agent.writeConfig({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: second, intervalSecs: 5 });
    await agent.start().waitForLog('heartbeat stream opened');
    assert.notEqual(agent.state().agent_id, agent_id, 'a new keypair is a new host');
    await agent.stop();
  });

  test('config_reload from the admin CLI (a task) applies a new heartbeat interval without a restart', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = newAgent(token, 5);
    const proc = agent.start();
    await proc.waitForLog('heartbeat stream opened');
    await waitFor('interval 5 recorded', async () => (await hostOf(agent)).heartbeat_interval_secs === 5);
    agent.writeConfig({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: 6 });
    const queued = await appliance.cliJson<{ id: string; type: string }>('hosts', 'reload-config', agent.state().agent_id);
    assert.equal(queued.type, 'config_reload');
    await waitFor('interval 6 recorded', async () => (await hostOf(agent)).heartbeat_interval_secs === 6, 20_000);
    const task = await waitFor('task succeeded', async () => {
      const shown = await appliance.cliJson<{ state: string; output: string }>('tasks', 'show', queued.id);
      return shown.state === 'succeeded' && shown;
    });
    assert.equal(task.output, 'heartbeat_interval_secs=6');
    assert.equal(proc.logged('heartbeat stream opened').length, 1, 'no reconnect or restart was needed');
    await agent.stop();
  });

  test('revoking a host through the admin API closes its stream at once, nothing the agent sends after is stored, and the agent stops with exit code 77 instead of retrying', async () => {
    const { token } = await appliance.createToken('--auto-approve');
    const agent = newAgent(token);
    const proc = agent.start();
    await proc.waitForLog('heartbeat acknowledged');
    const revokedAt = Date.now();
    assert.equal((await appliance.cli('hosts', 'revoke', agent.state().agent_id)).code, 0);
    await proc.waitForLog('heartbeat stream closed', { error_code: 'ERR_AGENT_NOT_ACTIVE' }, 10_000);
    // Closed when the revocation committed (the CLI itself takes about a second), not at a presence deadline.
    const closedAfterMs = Date.now() - revokedAt;
    assert.ok(closedAfterMs < 5_000, `the stream closed ${closedAfterMs} ms after the revoke was asked`);
    const exit = await Promise.race([proc.exited, sleep(20_000).then(() => undefined)]);
    assert.deepEqual(exit, { code: 77, signal: null });
    const host = await hostOf(agent);
    assert.equal(host.status, 'revoked');
    // None stored at all (null) holds too: a heartbeat is acknowledged before its once-a-second write.
    assert.ok(host.last_heartbeat_at === null || Date.parse(host.last_heartbeat_at as string) <= revokedAt, `a heartbeat received at ${host.last_heartbeat_at as string} was stored after the revocation`);
    assert.equal(proc.logged('heartbeat stream opened').length, 1, 'the revoked agent opened no stream again');
  });
});

describe('agent configuration and trust errors', () => {
  let appliance: TestAppliance;
  const agents: TestAgent[] = [];
  before(async () => {
    appliance = await TestAppliance.start();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance.dispose();
  });

  function sandbox(): TestAgent {
    const agent = new TestAgent({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: 'tok_unused' });
    agents.push(agent);
    return agent;
  }

  test('malformed TOML, an interval out of range and a missing CA file exit 78 with the problem named', async () => {
    const agent = sandbox();
    const cases: Array<[string, RegExp]> = [
      ['[ingest\naddress = "x"', /TOML/i],
      [`[ingest]\naddress = "${appliance.address}"\n[agent]\ndata_dir = "${agent.dataDir}"\nheartbeat_interval_secs = 0\n`, /heartbeat_interval_secs/],
      [`[ingest]\naddress = "${appliance.address}"\nca_cert_file = "/nonexistent/ca.crt"\n[agent]\ndata_dir = "${agent.dataDir}"\n`, /ca\.crt/],
      [`[agent]\ndata_dir = "${agent.dataDir}"\n`, /address/],
    ];
    for (const [toml, message] of cases) {
      writeFileSync(agent.configPath, toml);
      const proc = agent.start();
      const exit = await proc.exited;
      assert.equal(exit.code, 78, `exit code for ${JSON.stringify(toml)}: stderr ${proc.stderr}`);
      assert.match(proc.stderr, message);
    }
  });

  test('an appliance certificate not signed by ca_cert_file is a configuration error, exit 78', async () => {
    const agent = sandbox();
    const otherCa = join(agent.root, 'other-ca.crt');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', join(agent.root, 'other-ca.key'), '-out', otherCa, '-subj', '/CN=not the appliance', '-days', '1'], { stdio: 'ignore' });
    agent.writeConfig({ address: appliance.address, caCertFile: otherCa, orgToken: 'tok_unused' });
    const proc = agent.start();
    const exit = await Promise.race([proc.exited, sleep(20_000).then(() => undefined)]);
    assert.equal(exit?.code, 78);
    assert.match(proc.stderr, /ERR_INGEST_TLS_UNTRUSTED/);
  });

  test('-check reports an unreachable address with exit 69 and a trusted appliance with exit 0', async () => {
    const agent = sandbox();
    agent.writeConfig({ address: 'localhost:1', caCertFile: appliance.caCertPath, orgToken: 'tok_unused' });
    const unreachable = agent.start(['-check']);
    assert.equal((await unreachable.exited).code, 69);
    assert.match(unreachable.stderr, /ERR_INGEST_UNREACHABLE/);
    agent.writeConfig({ address: appliance.address, caCertFile: appliance.caCertPath, orgToken: 'tok_unused' });
    const reachable = agent.start(['-check']);
    assert.equal((await reachable.exited).code, 0, reachable.stderr);
  });
});
