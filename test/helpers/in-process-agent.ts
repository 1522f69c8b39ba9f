import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { loadAgentConfig } from '../../agent/config/load.ts';
import { Agent } from '../../agent/lifecycle/agent.ts';
import { createLogger } from '../../agent/log/logger.ts';
import { IngestAddresses } from '../../agent/transport/addresses.ts';
import { createGrpcTransport } from '../../agent/transport/grpc-transport.ts';

export interface InProcessAgent {
  readonly agent: Agent;
  /** When each 'heartbeat stream opened' was logged (ms since the epoch). */
  readonly opened: number[];
  /** Every log message, in order. */
  readonly messages: string[];
}

/**
 * An agent with the real lifecycle, backoff and gRPC transport, its own data directory and key,
 * logging into memory: many of them fit in one test process. Its state lives in `dir` (created
 * when missing) and its machine fingerprint derives from that path, so a second agent made on the
 * same `dir` is the same machine with the same identity and credential.
 */
export function inProcessAgent(dir: string, hostname: string, appliance: { address: string; caCertPath: string }, token: string, heartbeatIntervalSecs = 10): InProcessAgent {
  const configFile = join(dir, 'agent.toml');
  mkdirSync(dir, { recursive: true });
  const toml = `[ingest]\naddress = "${appliance.address}"\nca_cert_file = "${appliance.caCertPath}"\n[agent]\norg_token = "${token}"\ndata_dir = "${join(dir, 'data')}"\nheartbeat_interval_secs = ${heartbeatIntervalSecs}\n`;
  writeFileSync(configFile, toml);
  const { config } = loadAgentConfig({ file: configFile, env: {} });
  const opened: number[] = [];
  const messages: string[] = [];
  const sink = new Writable({
    write(chunk, _encoding, done) {
      const msg = (JSON.parse(String(chunk)) as { msg?: string }).msg ?? '';
      messages.push(msg);
      if (msg === 'heartbeat stream opened') opened.push(Date.now());
      done();
    },
  });
  const addresses = new IngestAddresses(config.ingest.addresses);
  const agent = new Agent({
    config,
    transport: createGrpcTransport(addresses, () => config.ingest.caPem),
    addresses,
    host: { hostname, machineFingerprint: createHash('sha256').update(dir).digest('hex'), os: 'linux', arch: 'x64', agentVersion: '0.1.0', tags: {} },
    vitals: () => ({ cpuPercent: 1, memoryPercent: 1, diskPercent: 1, uptimeSeconds: 1 }),
    log: createLogger('info', sink),
    reload: () => loadAgentConfig({ file: configFile, env: {} }),
  });
  return { agent, opened, messages };
}
