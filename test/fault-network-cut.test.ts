/**
 * Fault: the network between agents and appliance cut, then restored (issue 14). The appliance runs in
 * this namespace (its admin API stays reachable throughout); REAL_AGENTS compiled agents and
 * LOAD_AGENTS virtual ones (ct-ops-loadtest --reconnect-after-failure: the agent's ack timeout and
 * backoff) run in a network namespace of their own, `ctops-fault-<pid>`, reaching it over a veth pair. The
 * cut is an iptables DROP, inside the agents' namespace, of every packet to and from the ingest port
 * (nothing answers: half-open connections, as a pulled cable leaves them), with a rule ahead of it
 * that counts the TCP SYNs, i.e. the agents' connection attempts.
 *
 * The bounds come from the presence and backoff settings:
 *   - offline: the appliance drops a stream not heard from for 2 × the agent's interval
 *     (appliance/presence/registry.ts), so each host is offline within 2 × INTERVAL_SECS of the cut
 *     (the last heartbeat came at or before it), plus SLACK_MS;
 *   - backing off: the agent ends a stream without an ack for ACK_TIMEOUT_INTERVALS intervals
 *     (agent/heartbeat/session.ts), so within (1 + ACK_TIMEOUT_INTERVALS) × INTERVAL_SECS of the cut it
 *     has logged the stream closed and waits at least RETRY_FLOOR_MS before each new attempt. A new
 *     attempt goes over the (dead) connection until keepalive ends it; then a new TCP connection
 *     waits out the kernel's SYN retransmissions (1, 2, 4, 8 s apart) until grpc's 20 s connect
 *     timeout, so an agent sends at most 5 SYNs per 20 s (0.25/s): MAX_SYNS_PER_AGENT_PER_SEC bounds
 *     that with room, while a tight loop (grpc's 0.2 s reconnect, or one attempt per failure) would
 *     send 5 and more per second;
 *   - online again: after the restore, a pending attempt connects at its next SYN retransmission (at
 *     most 8 s apart within the connect timeout) or the agent's next attempt; an attempt that found
 *     no ack ends after ACK_TIMEOUT_INTERVALS intervals and is followed by a wait under its backoff
 *     ceiling: every agent streams again within ACK_TIMEOUT_INTERVALS × INTERVAL_SECS + the 4 s
 *     ceiling + SLACK_MS of the restore. The virtual agents' attempts in the cut are single TCP
 *     connections given 20 s each (the agent's Register deadline), so they too are back within that.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ACK_TIMEOUT_INTERVALS } from '../agent/heartbeat/session.ts';
import { FIRST_WAIT_AFTER_HEALTHY_CEILING_MS, RETRY_FLOOR_MS } from '../agent/lifecycle/backoff.ts';
import { ExecutableAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { AdminClient } from '../appliance/cli/admin-client.ts';
import { CA_CERT_FILE, CLI_CREDENTIAL_FILE, ENDPOINT_FILE } from '../appliance/lib/data-dir-files.ts';
import { AGENT_BIN, LoggedProcess, REPO_ROOT } from './helpers/processes.ts';
import { StopWaiting, waitFor } from './helpers/wait.ts';

const REAL_AGENTS = 3;
const LOAD_AGENTS = 300;
/** The shortest interval an agent accepts (agent/config/load.ts): presence's deadline is twice it. */
const INTERVAL_SECS = 5;
/**
 * Long enough for the appliance's deadline (10 s), the agents' ack timeout (15 s after the last ack)
 * and the real agents' gRPC keepalive (a ping every 30 s, 10 s to answer) to end the dead
 * connections, so that the agents attempt new TCP connections into the cut: the SYNs counted.
 */
const CUT_MS = 35_000;
/** Timers, a log line and an admin API poll on a busy 2-core machine. */
const SLACK_MS = 3_000;
/** SYNs per agent per second of the cut above which the agents are taken to spin (see above: a few per 20 s expected). */
const MAX_SYNS_PER_AGENT_PER_SEC = 1;
/** The loadtest's heartbeat phase: two intervals before the cut, the cut, and the return. */
const LOAD_DURATION_SECS = 2 * INTERVAL_SECS + CUT_MS / 1000 + 20;

const NAMESPACE = `ctops-fault-${process.pid}`;
/** Interface names are at most 15 characters. */
const VETH_ROOT = `ctf${process.pid % 100_000}r`;
const VETH_AGENTS = `ctf${process.pid % 100_000}a`;
const SUBNET = `10.201.${process.pid % 250}`;
const APPLIANCE_IP = `${SUBNET}.1`;
const AGENTS_IP = `${SUBNET}.2`;

/**
 * A data directory as seen from the agents' namespace, for ct-ops-loadtest: the CA, the admin
 * credential, and appliance.json naming the admin API by the appliance's veth address (the real one
 * names loopback, which inside the namespace is the namespace's own).
 */
function namespaceView(appliance: TestAppliance): string {
  const view = mkdtempSync(join(tmpdir(), 'ct-ops-netns-view-'));
  for (const file of [CA_CERT_FILE, CLI_CREDENTIAL_FILE]) copyFileSync(join(appliance.dataDir, file), join(view, file));
  writeFileSync(join(view, ENDPOINT_FILE), JSON.stringify({ admin_api: `https://${APPLIANCE_IP}:${appliance.httpPort}`, grpc_port: appliance.grpcPort, pid: appliance.process.child.pid }));
  return view;
}

function sh(command: string, ...args: string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8', timeout: 10_000 });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${result.status}: ${result.stderr}`);
  return result.stdout;
}

const inNamespace = (...args: string[]): string => sh('ip', 'netns', 'exec', NAMESPACE, ...args);

function unavailable(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces and iptables need root';
  for (const [command, ...args] of [['ip', 'netns', 'list'], ['iptables', '-V']]) {
    const probe = spawnSync(command!, args, { encoding: 'utf8' });
    if (probe.status !== 0) return `${command} ${args.join(' ')} is not available here (${probe.error?.message ?? probe.stderr.trim()})`;
  }
  return undefined;
}

/** The TCP SYNs the agents' namespace sent to the ingest port (the counting rule ahead of the DROP). */
function synsSent(port: number): number {
  const rules = inNamespace('iptables', '-L', 'OUTPUT', '-v', '-n', '-x');
  const line = rules.split('\n').find((row) => row.includes(`dpt:${port}`) && row.includes('flags:0x17/0x02'));
  assert.ok(line, `the SYN counting rule: ${rules}`);
  return Number(line.trim().split(/\s+/)[0]);
}

const cleanup: Array<() => Promise<void> | void> = [];
after(async () => {
  for (const step of cleanup.reverse()) {
    try {
      await step();
    } catch (error) {
      console.error(`cleanup: ${(error as Error).message}`);
    }
  }
});

test(`${REAL_AGENTS} agents behind a cut network: the hosts go offline within the presence deadline, the agents back off without spinning, and all stream again after the restore`, { skip: unavailable() ?? false, timeout: 120_000 }, async () => {
  sh('ip', 'netns', 'add', NAMESPACE);
  cleanup.push(() => {
    // Deleting the namespace deletes its end of the pair; the kernel frees the other end lazily, so it is deleted here too.
    spawnSync('ip', ['netns', 'del', NAMESPACE]);
    spawnSync('ip', ['link', 'del', VETH_ROOT]);
  });
  sh('ip', 'link', 'add', VETH_ROOT, 'type', 'veth', 'peer', 'name', VETH_AGENTS, 'netns', NAMESPACE);
  sh('ip', 'addr', 'add', `${APPLIANCE_IP}/24`, 'dev', VETH_ROOT);
  sh('ip', 'link', 'set', VETH_ROOT, 'up');
  inNamespace('ip', 'addr', 'add', `${AGENTS_IP}/24`, 'dev', VETH_AGENTS);
  inNamespace('ip', 'link', 'set', VETH_AGENTS, 'up');
  inNamespace('ip', 'link', 'set', 'lo', 'up');

  const appliance = await TestAppliance.start({ sans: ['localhost', '127.0.0.1', APPLIANCE_IP], args: ['--listen', '0.0.0.0'] });
  cleanup.push(() => appliance.dispose());
  const port = appliance.grpcPort;
  const { token } = await appliance.createToken('--auto-approve', '--max-uses', String(REAL_AGENTS));
  const agents = Array.from({ length: REAL_AGENTS }, () => new ExecutableAgent(
    { address: `${APPLIANCE_IP}:${port}`, caCertFile: appliance.caCertPath, orgToken: token, intervalSecs: INTERVAL_SECS },
    ['ip', 'netns', 'exec', NAMESPACE, process.execPath, AGENT_BIN],
  ));
  for (const agent of agents) cleanup.push(() => agent.dispose());
  for (const agent of agents) agent.start();
  for (const agent of agents) await agent.process!.waitForLog('heartbeat stream opened', {}, 30_000);
  const view = namespaceView(appliance);
  cleanup.push(() => rmSync(view, { recursive: true, force: true }));
  const load = new LoggedProcess('ip', [
    'netns', 'exec', NAMESPACE, process.execPath, join(REPO_ROOT, 'dist/ct-ops-loadtest.js'), '--data-dir', view, '--address', `${APPLIANCE_IP}:${port}`,
    '--allow-address', APPLIANCE_IP, '--agents', String(LOAD_AGENTS), '--interval', String(INTERVAL_SECS), '--duration', String(LOAD_DURATION_SECS),
    '--reconnect-after-failure', '--json',
  ]);
  cleanup.push(async () => void (await load.stop('SIGKILL')));
  const admin = new AdminClient(appliance.dataDir);
  const statuses = async (): Promise<string[]> => (await admin.call<Array<{ status: string }>>('GET', '/api/v1/hosts')).map((host) => host.status);
  const all = (wanted: string) => async (): Promise<boolean> => {
    const seen = await statuses();
    if (!load.running) throw new StopWaiting(`ct-ops-loadtest exited early: ${load.stderr.slice(-2000)}`);
    return seen.length === REAL_AGENTS + LOAD_AGENTS && seen.every((status) => status === wanted);
  };
  await waitFor(`all ${REAL_AGENTS + LOAD_AGENTS} hosts online`, all('online'), 45_000, 500);
  // Two intervals on: every stream is healthy (2 acks over one interval), so the agents' backoff starts over at the cut.
  await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_SECS * 1000));

  // Both ways: with only the agents' packets dropped, the appliance's would still end their streams cleanly.
  const drops = [['OUTPUT', '--dport'], ['INPUT', '--sport']].map(([chain, match]) => [chain!, '-p', 'tcp', match!, String(port), '-j', 'DROP']);
  inNamespace('iptables', '-A', 'OUTPUT', '-p', 'tcp', '--dport', String(port), '--syn');
  for (const rule of drops) inNamespace('iptables', '-A', ...rule);
  const cutAt = Date.now();
  const eventsAtCut = agents.map((agent) => agent.process!.events.length);
  let restored = false;
  const restore = (): void => {
    if (restored) return;
    restored = true;
    for (const rule of drops) inNamespace('iptables', '-D', ...rule);
  };
  cleanup.push(restore);

  const offlineBound = 2 * INTERVAL_SECS * 1000 + SLACK_MS;
  await waitFor(`every host offline within ${offlineBound} ms of the cut`, all('offline'), offlineBound, 250);
  const offlineAfter = Date.now() - cutAt;
  const backingOffBound = (1 + ACK_TIMEOUT_INTERVALS) * INTERVAL_SECS * 1000 + SLACK_MS;
  for (const [index, agent] of agents.entries()) {
    await waitFor(`agent ${index} ends its silent stream within ${backingOffBound} ms of the cut`, () => agent.process!.events.slice(eventsAtCut[index]).some((event) => event.msg === 'heartbeat stream closed'), Math.max(1, cutAt + backingOffBound - Date.now()), 100);
  }
  const closedAfter = Date.now() - cutAt;
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, cutAt + CUT_MS - Date.now())));
  const syns = synsSent(port);
  const cutSecs = (Date.now() - cutAt) / 1000;
  const during = agents.map((agent, index) => agent.process!.events.slice(eventsAtCut[index]));
  restore();
  const restoredAt = Date.now();

  const onlineBound = ACK_TIMEOUT_INTERVALS * INTERVAL_SECS * 1000 + FIRST_WAIT_AFTER_HEALTHY_CEILING_MS + SLACK_MS;
  await waitFor(`every host online within ${onlineBound} ms of the restore`, all('online'), onlineBound, 250);
  const onlineAfter = Date.now() - restoredAt;
  for (const [index, agent] of agents.entries()) {
    assert.ok(agent.process!.events.slice(eventsAtCut[index]).some((event) => event.msg === 'heartbeat stream opened'), `agent ${index} streams again`);
  }

  const exited = await load.exited;
  const summary = JSON.parse(load.stdout) as { errors: number; error_examples: string[]; outage: Record<string, number | null> };
  const { outage } = summary;

  const waits = during.map((events) => events.filter((event) => event.msg === 'heartbeat stream closed').map((event) => event.reconnect_in_ms as number));
  console.log(JSON.stringify({ cut_secs: cutSecs, offline_after_ms: offlineAfter, stream_closed_after_ms: closedAfter, online_after_restore_ms: onlineAfter, syns_during_cut: syns, waits_ms: waits, virtual: outage }));
  assert.equal(exited.code, 0, `ct-ops-loadtest: ${JSON.stringify(summary.error_examples)}`);
  assert.equal(outage.still_out, 0);
  assert.equal(outage.agents_back, LOAD_AGENTS, 'each virtual agent noticed the cut once (its ack timeout) and came back once');
  assert.ok(outage.first_failed_at_ms! - cutAt >= ACK_TIMEOUT_INTERVALS * INTERVAL_SECS * 1000 - INTERVAL_SECS * 1000, 'no virtual agent gave up on its stream before its ack timeout could pass');
  assert.ok(outage.last_back_at_ms! - restoredAt <= onlineBound, `the last virtual agent was back ${outage.last_back_at_ms! - restoredAt} ms after the restore`);
  for (const [index, events] of during.entries()) {
    assert.ok(waits[index]!.length >= 1, `agent ${index} noticed the cut`);
    assert.ok(waits[index]!.every((wait) => wait >= RETRY_FLOOR_MS), `agent ${index} waits at least ${RETRY_FLOOR_MS} ms before each attempt: ${waits[index]!.join(', ')}`);
    // Each attempt without an ack lasts ACK_TIMEOUT_INTERVALS intervals: a handful of stream ends in the cut, not one per failure in a loop.
    assert.ok(waits[index]!.length <= Math.ceil(cutSecs / (ACK_TIMEOUT_INTERVALS * INTERVAL_SECS)) + 1, `agent ${index} ended ${waits[index]!.length} streams in ${cutSecs} s`);
    assert.equal(events.filter((event) => event.msg === 'registering agent').length, 0, `agent ${index} kept its identity: no new registration`);
  }
  const agentsInCut = REAL_AGENTS + LOAD_AGENTS;
  assert.ok(syns >= 1, 'the agents did try new connections during the cut (what the SYN bound is about)');
  assert.ok(syns <= MAX_SYNS_PER_AGENT_PER_SEC * agentsInCut * cutSecs, `${syns} SYNs from ${agentsInCut} agents in ${cutSecs} s of cut`);
});
