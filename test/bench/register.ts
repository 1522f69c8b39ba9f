/**
 * bench:register — CPU per Register of the enrolment workflow alone, in-process: the signature
 * check, the registration transaction (key lookups, the nonce, the token use, the clone check, the
 * host insert) and the JWT of an auto-approved host, through EnrolmentService.register on a
 * temporary SQLite file opened as the appliance opens it. Not measured: TLS, HTTP/2, protobuf and the
 * gRPC handler (bench:core measures the whole path).
 *
 * Two rounds of BENCH_REGISTRATIONS (default 1,000) new keys each, BENCH_IN_FLIGHT (default 50) at
 * a time: the first in a fresh process (cold: what bench:core's registration phase sees, code not yet
 * optimised), the second right after it (warm). CPU is process.cpuUsage (every thread: WebCrypto
 * signing, garbage collection and the JIT's compiler threads included).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { AgentJwtAuthority } from '../../appliance/auth/agent-jwt.ts';
import { RegisterChallenges } from '../../appliance/enrolment/register-challenge.ts';
import { parseRegisterRequest, type RegisterInput } from '../../appliance/enrolment/register-input.ts';
import { EnrolmentService } from '../../appliance/enrolment/service.ts';
import { ensureJwtSigningKey } from '../../appliance/pki/jwt-signing-key.ts';
import { openStores } from '../../appliance/store/index.ts';
import { decodedRegister, newIdentity, signedRegister } from '../helpers/ingest-client.ts';
import { positiveIntegerEnv, progressFor } from './lib/env.ts';
import { describeMachine } from './lib/machine.ts';

const progress = progressFor('bench:register');

/** Registers `inputs`, `inFlight` at a time; the CPU (µs, all threads) and wall time (ms) per registration. */
async function round(enrolment: EnrolmentService, inputs: readonly RegisterInput[], inFlight: number): Promise<{ cpuUs: number; perSecond: number }> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < inputs.length) {
      const response = await enrolment.register(inputs[next++]!, Date.now());
      if (response.status !== 'AGENT_STATUS_ACTIVE') throw new Error(`a bench registration was answered ${response.status}`);
    }
  };
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const cpu = process.cpuUsage(cpuBefore);
  const seconds = (performance.now() - started) / 1000;
  return { cpuUs: (cpu.user + cpu.system) / inputs.length, perSecond: inputs.length / seconds };
}

async function main(): Promise<void> {
  const count = positiveIntegerEnv('BENCH_REGISTRATIONS', 1000);
  const inFlight = positiveIntegerEnv('BENCH_IN_FLIGHT', 50);
  const dir = mkdtempSync(join(tmpdir(), 'ct-ops-bench-register-'));
  const stores = openStores(join(dir, 'appliance.db'));
  try {
    const log = pino({ level: 'silent' });
    const now = Date.now();
    const org = await stores.organisations.ensureDefault(now);
    const jwtKey = await ensureJwtSigningKey(dir);
    const enrolment = new EnrolmentService({ stores, jwt: new AgentJwtAuthority(jwtKey, 3600), challenges: new RegisterChallenges(jwtKey.privateKey), orgId: org.id, pendingPollSecs: 30, log });
    const { secret } = await enrolment.issueToken(org.id, { label: 'bench', expiresInMs: 3_600_000, maxUses: 2 * count, autoApprove: true, tags: {}, createdBy: 'bench', source: 'admin', metadata: {} }, now);
    progress(`signing ${2 * count} Register requests`);
    const inputs = Array.from({ length: 2 * count }, () => parseRegisterRequest(decodedRegister(signedRegister(newIdentity(), secret))));
    progress('registering');
    const cold = await round(enrolment, inputs.slice(0, count), inFlight);
    const warm = await round(enrolment, inputs.slice(count), inFlight);
    const machine = describeMachine();
    console.log(`bench:register, ${machine.date}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Linux ${machine.kernel}, Node ${machine.node}`);
    console.log(`| round (${count} registrations, ${inFlight} in flight) | CPU per registration | registrations/s |`);
    console.log('|---|---|---|');
    for (const [name, result] of [['cold (first in the process)', cold], ['warm (next)', warm]] as const) {
      console.log(`| ${name} | ${Math.round(result.cpuUs)} µs | ${Math.round(result.perSecond)} |`);
    }
  } finally {
    stores.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
