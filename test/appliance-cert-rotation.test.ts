import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, sign } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, createSecureContext } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { AgentTrust, TRUST_FILE } from '../agent/identity/trust.ts';
import { enterPhase, nextPhase, settleInterruptedRotation } from '../appliance/pki/ca-rotation.ts';
import { readCaRotation, writeCaRotation } from '../appliance/pki/rotation-file.ts';
import { createCa, ensureTlsMaterial } from '../appliance/pki/certificates.ts';
import { CtOpsError, codeFromGrpcDetails } from '../common/errors.ts';
import { parseCertificates, trustBundlePayload, type TrustBundle } from '../common/trust-bundle.ts';
import { loadApplianceInputs } from '../bundler/build/inputs.ts';
import { CertificateService } from '../appliance/pki/certificate-service.ts';
import { PresenceRegistry } from '../appliance/presence/registry.ts';
import { openStores } from '../appliance/store/index.ts';
import { TestAgent } from './helpers/agent.ts';
import { TestAppliance } from './helpers/appliance.ts';
import { useIngestFixture } from './helpers/ingest-fixture.ts';
import { waitFor } from './helpers/wait.ts';
import { singleInstance } from './helpers/single-instance.ts';

interface CertsStatus {
  phase: string;
  generation: number;
  ca_fingerprint: string;
  next_ca_fingerprint: string | null;
  server_certificate: { fingerprint: string; issuer: string; sans: string[] };
  hosts: { active: number; online_with_bundle: number; online_without: number; offline_with_bundle: number; offline_without: number };
  without_bundle: Array<{ host_id: string }>;
}

/** The certificate the listener on `port` (gRPC or HTTPS) presents, verified against `ca` for the name localhost. */
function servedCertificate(port: number, ca: string): Promise<{ fingerprint: string; sans: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, servername: 'localhost', ca, ALPNProtocols: ['h2', 'http/1.1'], timeout: 10_000 }, () => {
      const peer = socket.getPeerCertificate();
      socket.end();
      resolve({ fingerprint: peer.fingerprint256, sans: peer.subjectaltname ?? '' });
    });
    socket.once('error', reject);
    socket.once('timeout', () => socket.destroy(new Error('no TLS handshake within 10 s')));
  });
}

describe('certificate rotation with real agents streaming over TLS', () => {
  let appliance: TestAppliance;
  let configFile: string;
  let root: string;
  const agents: TestAgent[] = [];
  let stayingOffline: TestAgent;

  /** An agent with its own copy of the CA, as an installed bundle gives it (not the appliance's live ca.crt). */
  function newAgent(token: string): TestAgent {
    const caCopy = join(root, `ca-${agents.length}.crt`);
    copyFileSync(appliance.caCertPath, caCopy);
    const agent = new TestAgent({ address: appliance.address, caCertFile: caCopy, orgToken: token, intervalSecs: 5 });
    agents.push(agent);
    return agent;
  }

  const caFileOf = (agent: TestAgent): string => readFileSync(agent.configPath, 'utf8').match(/ca_cert_file = "(.+)"/)![1]!;
  const status = (): Promise<CertsStatus> => appliance.cliJson<CertsStatus>('certs', 'status');
  const acks = (agent: TestAgent): number => agent.process!.logged('heartbeat acknowledged').length;
  async function restart(agent: TestAgent): Promise<void> {
    await agent.stop();
    await agent.start().waitForLog('heartbeat stream opened', {}, 20_000);
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'ct-ops-cert-rotation-'));
    configFile = join(root, 'appliance.toml');
    writeFileSync(configFile, 'sans = ["localhost", "127.0.0.1"]\n');
    appliance = await TestAppliance.start({ sans: [], args: ['--config', configFile] });
    const { token } = await appliance.createToken('--auto-approve', '--max-uses', '5');
    for (let index = 0; index < 3; index += 1) newAgent(token);
    await Promise.all(agents.map((agent) => agent.start().waitForLog('heartbeat stream opened', {}, 20_000)));
    // The third agent is enrolled, then offline through the whole CA rotation.
    stayingOffline = agents[2]!;
    await stayingOffline.stop();
  });
  after(async () => {
    await Promise.all(agents.map((agent) => agent.dispose()));
    await appliance?.dispose();
    // The appliance restarted on its data directory does not own it.
    if (appliance) rmSync(appliance.dataDir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  });

  test('certs rotate-server serves a new leaf for the SANs edited in the config file, without a restart; agents keep their identity and stream again', async () => {
    const [first, second] = agents as [TestAgent, TestAgent];
    const before = await servedCertificate(appliance.grpcPort, appliance.caCert);
    assert.doesNotMatch(before.sans, /ct-ops\.example/);
    writeFileSync(configFile, 'sans = ["localhost", "127.0.0.1", "ct-ops.example"]\n');

    const rotated = await appliance.cliJson<CertsStatus>('certs', 'rotate-server');
    assert.ok(rotated.server_certificate.sans.includes('DNS:ct-ops.example'), JSON.stringify(rotated.server_certificate));
    for (const port of [appliance.grpcPort, appliance.httpPort]) {
      const served = await servedCertificate(port, appliance.caCert);
      assert.notEqual(served.fingerprint, before.fingerprint, `port ${port} serves the new leaf`);
      assert.equal(served.fingerprint, rotated.server_certificate.fingerprint);
      assert.match(served.sans, /DNS:ct-ops\.example/);
    }

    // The open stream goes on; a reconnecting agent verifies the new leaf against the CA it always had.
    const id = second.state().agent_id;
    const ackedBefore = acks(first);
    await restart(second);
    assert.equal(second.state().agent_id, id, 'same host id');
    assert.equal(second.process!.logged('registering agent').length, 0, 'no re-enrolment');
    await waitFor('the untouched agent keeps streaming', () => acks(first) >= ackedBefore + 1, 15_000);
  });

  test('CA rotation: start sends agents the signed bundle, switch serves the next CA (also after an appliance restart), finish retires the old one; agents stream throughout, after restarts, and when enrolled during the overlap', async () => {
    const [first, second] = agents as [TestAgent, TestAgent];
    const offlineId = stayingOffline.state().agent_id;
    const oldCa = appliance.caCert;

    const startedAt = Date.now();
    const started = await appliance.cliJson<CertsStatus>('certs', 'rotate-ca', 'start');
    assert.equal(started.phase, 'update-clients');
    assert.ok(started.generation >= startedAt && started.generation <= Date.now(), 'the generation is the issue time in ms');
    assert.equal(statSync(join(appliance.dataDir, 'ca-next.key')).mode & 0o777, 0o600);
    const nextCa = readFileSync(join(appliance.dataDir, 'ca-next.crt'), 'utf8');
    for (const agent of [first, second]) {
      await agent.process!.waitForLog('trust bundle stored', { generation: started.generation }, 15_000);
      const stored = JSON.parse(readFileSync(join(agent.dataDir, TRUST_FILE), 'utf8')) as { generation: number; ca_pems: string[] };
      assert.equal(stored.generation, started.generation);
      assert.deepEqual(stored.ca_pems.map((pem) => new X509Certificate(pem).fingerprint256), [new X509Certificate(oldCa).fingerprint256, new X509Certificate(nextCa).fingerprint256]);
    }
    const acknowledged = await waitFor('both streaming agents reported the bundle', async () => {
      const shown = await status();
      return shown.hosts.online_with_bundle === 2 && shown;
    }, 15_000);
    assert.deepEqual(acknowledged.hosts, { active: 3, online_with_bundle: 2, online_without: 0, offline_with_bundle: 0, offline_without: 1 });
    const shown = await appliance.cli('certs', 'status');
    assert.match(shown.stdout, /^phase: update-clients$/m);
    assert.match(shown.stdout, /^without_bundle: 0 online, 1 offline$/m);
    assert.ok(shown.stdout.includes(offlineId), 'the host lacking the bundle is listed');

    // The offline host never confirmed the bundle: switching would cut it off, so it is refused by name.
    const refused = await appliance.cli('certs', 'rotate-ca', 'switch');
    assert.equal(refused.code, 75, refused.stderr);
    assert.match(refused.stderr, /ERR_CA_ROTATION_UNACKNOWLEDGED/);
    assert.ok(refused.stderr.includes(offlineId), refused.stderr);

    const switched = await appliance.cliJson<CertsStatus>('certs', 'rotate-ca', 'switch', '--force');
    assert.equal(switched.phase, 'update-servers');
    assert.equal(switched.server_certificate.issuer, new X509Certificate(nextCa).subject);
    await servedCertificate(appliance.grpcPort, nextCa);
    await assert.rejects(servedCertificate(appliance.grpcPort, oldCa), /unable to verify|self.signed|issuer/i, 'the old CA alone no longer verifies the served leaf');
    // The phase survives a restart: the appliance keeps serving the next CA's certificate, and agents come back.
    const opened = (agent: TestAgent): number => agent.process!.logged('heartbeat stream opened').length;
    const openedBefore = opened(first);
    await appliance.stop();
    appliance = await TestAppliance.start({ dataDir: appliance.dataDir, grpcPort: appliance.grpcPort, sans: [], args: ['--config', configFile] });
    await servedCertificate(appliance.grpcPort, nextCa);
    await waitFor('the agent to stream again after the appliance restarted', () => opened(first) > openedBefore, 20_000);

    // A host enrolled during the overlap trusts both CAs from its bundle's ca.crt and gets the bundle on its first stream.
    const { token } = await appliance.createToken('--auto-approve');
    const latecomer = newAgent(token);
    const bundleCa = loadApplianceInputs(appliance.dataDir).caPem.toString('utf8');
    assert.deepEqual(parseCertificates(bundleCa).map((ca) => ca.fingerprint256), [oldCa, nextCa].map((pem) => new X509Certificate(pem).fingerprint256), "a bundle built now carries both CAs as its ca.crt");
    writeFileSync(caFileOf(latecomer), bundleCa);
    await latecomer.start().waitForLog('trust bundle stored', { generation: started.generation }, 20_000);

    const ackedBefore = acks(first);
    await restart(second);
    assert.equal(second.process!.logged('trusting the stored trust bundle', { generation: started.generation }).length, 1);
    assert.equal(second.process!.logged('registering agent').length, 0);
    await waitFor('the agent on its old connection keeps streaming', () => acks(first) >= ackedBefore + 1, 15_000);

    const finished = await appliance.cliJson<CertsStatus>('certs', 'rotate-ca', 'finish');
    assert.equal(finished.phase, 'standby');
    assert.ok(finished.generation > started.generation);
    assert.equal(finished.next_ca_fingerprint, null);
    assert.equal(new X509Certificate(appliance.caCert).fingerprint256, new X509Certificate(nextCa).fingerprint256, 'ca.crt is the former next CA');
    assert.ok(!existsSync(join(appliance.dataDir, 'ca-next.key')) && !existsSync(join(appliance.dataDir, 'ca-next.crt')));
    const retired = readdirSync(appliance.dataDir).filter((name) => /^ca-retired-\d{8}T\d{6}\.crt$/.test(name));
    assert.equal(retired.length, 1);
    assert.equal(readFileSync(join(appliance.dataDir, retired[0]!), 'utf8'), oldCa);
    // The old key is gone: ca.key is the key of the new ca.crt.
    const caKey = createPrivateKey(readFileSync(join(appliance.dataDir, 'ca.key')));
    assert.ok(new X509Certificate(appliance.caCert).checkPrivateKey(caKey));

    for (const agent of [first, second, latecomer]) {
      await agent.process!.waitForLog('trust bundle stored', { generation: finished.generation }, 15_000);
      const stored = JSON.parse(readFileSync(join(agent.dataDir, TRUST_FILE), 'utf8')) as { ca_pems: string[] };
      assert.deepEqual(stored.ca_pems.map((pem) => new X509Certificate(pem).fingerprint256), [new X509Certificate(nextCa).fingerprint256]);
    }
    // Its ca_cert_file still holds only the retired CA: the stored bundle is what it trusts now.
    await restart(first);
    assert.equal(first.process!.logged('registering agent').length, 0);
    const after = await waitFor('the three streaming agents report the finished bundle', async () => {
      const shown = await status();
      return shown.hosts.online_with_bundle === 3 && shown;
    }, 15_000);
    assert.equal(after.hosts.offline_without, 1);
  });

  test('an agent offline through the whole rotation fails TLS with an error naming the recovery; a copy of the new ca.crt brings it back', async () => {
    const proc = stayingOffline.start();
    await waitFor('the agent to exit', () => !proc.running, 20_000);
    assert.equal((await proc.exited).code, 78);
    const fatal = proc.logged('agent stopped on a fatal error')[0];
    assert.equal(fatal?.code, 'ERR_INGEST_TLS_UNTRUSTED');
    assert.match(String(fatal?.error), /CA was rotated while this agent could not reach it, put the appliance's current ca\.crt in ca_cert_file/);

    copyFileSync(appliance.caCertPath, caFileOf(stayingOffline));
    const recovered = stayingOffline.start();
    await recovered.waitForLog('heartbeat stream opened', {}, 20_000);
    await recovered.waitForLog('trust bundle stored', { generation: (await status()).generation }, 15_000);
    assert.equal(recovered.logged('registering agent').length, 0, 'the same identity, no re-enrolment');
  });
});

describe('the trust bundle verifier and the rotation phases', () => {
  const log = pino({ level: 'silent' });
  let dir: string;
  let trusted: { certPem: string; keyPem: string };
  let attacker: { certPem: string; keyPem: string };
  let third: { certPem: string; keyPem: string };
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ct-ops-trust-'));
    [trusted, attacker, third] = await Promise.all([createCa(new Date()), createCa(new Date(Date.now() + 1000)), createCa(new Date(Date.now() + 2000))]);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const bundle = (generation: number, caPems: string[], signerKeyPem: string): TrustBundle => ({
    generation,
    caPems,
    signature: sign('sha256', trustBundlePayload(generation, caPems.map((pem) => new X509Certificate(pem))), createPrivateKey(signerKeyPem)),
  });
  const refusedAs = (pattern: RegExp) => (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_TRUST_BUNDLE_INVALID' && pattern.test(error.message);

  test('a bundle not signed by a trusted CA, tampered with, stale or holding a leaf is refused and nothing is stored', () => {
    const trust = AgentTrust.load(dir, trusted.certPem, log);
    const both = [trusted.certPem, attacker.certPem];
    assert.throws(() => trust.accept(bundle(1, both, attacker.keyPem), new Date()), refusedAs(/signature does not verify/), 'signed by an untrusted CA');
    assert.throws(() => trust.accept({ ...bundle(1, [trusted.certPem], trusted.keyPem), caPems: both }, new Date()), refusedAs(/signature does not verify/), 'a CA added after signing');
    assert.throws(() => trust.accept({ ...bundle(1, both, trusted.keyPem), generation: 2 }, new Date()), refusedAs(/signature does not verify/), 'the generation changed after signing');
    const leafKey = join(dir, 'leaf.key');
    const leaf = execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', leafKey, '-subj', '/CN=leaf', '-addext', 'basicConstraints=critical,CA:FALSE', '-days', '1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    rmSync(leafKey);
    assert.throws(() => trust.accept(bundle(1, [trusted.certPem, leaf], trusted.keyPem), new Date()), refusedAs(/not a CA certificate/));
    // A second certificate (or any text) inside one entry: X509Certificate reads the first block only, so the signature would not cover it.
    const signedBoth = bundle(1, both, trusted.keyPem);
    assert.throws(() => trust.accept({ ...signedBoth, caPems: [trusted.certPem, attacker.certPem + third.certPem] }, new Date()), refusedAs(/exactly one PEM certificate/), 'a CA smuggled behind a signed one');
    assert.throws(() => trust.accept({ ...signedBoth, caPems: [trusted.certPem, `${attacker.certPem}trailing text\n`] }, new Date()), refusedAs(/exactly one PEM certificate/), 'text after the block');
    assert.equal(existsSync(join(dir, TRUST_FILE)), false, 'nothing stored');
    assert.equal(trust.generation, 0);

    // Stored and trusted: the verified certificates re-encoded, not the entries' text (here with extra blank lines).
    trust.accept({ ...bundle(3, both, trusted.keyPem), caPems: [`\n\n${trusted.certPem}\n\n`, attacker.certPem] }, new Date());
    assert.equal(trust.generation, 3);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, TRUST_FILE), 'utf8')).ca_pems, both.map((pem) => new X509Certificate(pem).toString()));
    assert.equal(parseCertificates(trust.caPem!).length, 2);
    assert.throws(() => trust.accept(bundle(2, [trusted.certPem], trusted.keyPem), new Date()), refusedAs(/not newer/), 'a replayed older bundle');
    // Stored and read back by the next start; a changed ca_cert_file wins over it.
    assert.equal(AgentTrust.load(dir, trusted.certPem, log).generation, 3);
    assert.equal(AgentTrust.load(dir, attacker.certPem, log).generation, 0);
  });

  test('a bundle of the generation held but other certificates is refused by name, the same one is a no-op, and a generation more than a day ahead is refused', () => {
    const agentDir = mkdtempSync(join(tmpdir(), 'ct-ops-trust-'));
    try {
      const trust = AgentTrust.load(agentDir, trusted.certPem, log);
      const now = new Date();
      const both = [trusted.certPem, attacker.certPem];
      assert.throws(() => trust.accept(bundle(now.getTime() + 2 * 86_400_000, both, trusted.keyPem), now), refusedAs(/more than a day ahead/), 'a pinning generation');
      trust.accept(bundle(now.getTime(), both, trusted.keyPem), now);
      const held = Buffer.from(trust.digest);
      assert.equal(held.length, 32);
      trust.accept(bundle(now.getTime(), both, trusted.keyPem), now);
      assert.deepEqual(trust.digest, held, 'the same bundle again changes nothing');
      assert.throws(() => trust.accept(bundle(now.getTime(), [trusted.certPem], trusted.keyPem), now), refusedAs(/the generation held but other certificates/));
      assert.deepEqual(AgentTrust.load(agentDir, trusted.certPem, log).digest, held, 'the digest is that of the stored bundle after a restart');
    } finally {
      rmSync(agentDir, { recursive: true, force: true });
    }
  });

  test('an appliance whose rotation state was restored from an earlier backup sees that agents hold another bundle: it sends its own and refuses the switch until they report it', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-restored-'));
    const agentDir = mkdtempSync(join(tmpdir(), 'ct-ops-restored-agent-'));
    const stores = openStores(join(dataDir, 'appliance.db'));
    try {
      const start = new Date();
      const tls = await ensureTlsMaterial(dataDir, ['localhost'], start);
      const org = await stores.organisations.ensureDefault(start.getTime());
      await stores.hosts.insert({
        id: 'hst_1', orgId: org.id, publicKey: Buffer.alloc(32, 1), hostname: 'web-1', machineFingerprint: 'f'.repeat(64),
        os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'active', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 0,
      });
      await stores.hosts.insert({
        id: 'hst_2', orgId: org.id, publicKey: Buffer.alloc(32, 2), hostname: 'new-1', machineFingerprint: 'e'.repeat(64),
        os: 'linux', arch: 'x64', agentVersion: '0.1.0', approval: 'pending', enrolmentTokenId: null, tags: {}, fingerprintConflictWith: null, enrolledAt: 0,
      });
      const agent = AgentTrust.load(agentDir, tls.caCertPem, log);
      const deps = { dataDir, sans: () => ['localhost'], stores, presence: new PresenceRegistry(() => undefined), cluster: await singleInstance(stores, log), log };
      // The agent's stream: what the appliance sends it is accepted as the real agent does; it reports what it holds.
      const stream = (certs: CertificateService) => {
        let sent = 0;
        const watch = certs.watchTrust('hst_1', async ({ trust }) => {
          sent += 1;
          agent.accept({ generation: Number(trust.generation), caPems: trust.ca_certificates_pem ?? [], signature: trust.signature as Uint8Array }, new Date(start.getTime() + 60_000));
          return true;
        });
        return { report: () => watch.heard(agent.generation, agent.digest), sent: () => sent };
      };

      const before = readdirSync(dataDir);
      const first = new CertificateService(deps, tls);
      await first.rotateCa('start', false, start, 'admin');
      const firstStream = stream(first);
      await firstStream.report();
      await firstStream.report();
      assert.equal(firstStream.sent(), 1, 'sent once, then the agent reports holding it');
      assert.equal((await first.status()).hosts.online_with_bundle + (await first.status()).hosts.offline_with_bundle, 1);

      // The data directory restored from a backup taken before the rotation: the same CA, no rotation record.
      for (const name of readdirSync(dataDir)) if (!before.includes(name)) rmSync(join(dataDir, name));
      const restored = new CertificateService(deps, tls);
      await restored.rotateCa('start', false, new Date(start.getTime() + 1000), 'admin');
      assert.equal((await restored.status()).without_bundle.length, 1, 'the agent holds the earlier start bundle, not this one');
      assert.deepEqual((await restored.status()).pending, [{ host_id: 'hst_2', hostname: 'new-1' }]);
      await assert.rejects(restored.rotateCa('switch', false, new Date(start.getTime() + 2000), 'admin'), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_CA_ROTATION_UNACKNOWLEDGED' && error.message.includes('web-1 (hst_1)') && error.message.includes('pending host(s) get no bundle until approved: new-1 (hst_2)'));
      const restoredStream = stream(restored);
      await restoredStream.report();
      assert.equal(restoredStream.sent(), 1, 'the bundle with other CAs is sent');
      await restoredStream.report();
      assert.equal((await restored.status()).without_bundle.length, 0);
      const switched = await restored.rotateCa('switch', false, new Date(start.getTime() + 3000), 'admin');
      assert.equal(switched.phase, 'update-servers');
      assert.ok(parseCertificates(agent.caPem!).some((ca) => ca.checkIssued(new X509Certificate(readFileSync(join(dataDir, 'ca-next.crt'), 'utf8')))), 'the agent trusts the CA now serving');
    } finally {
      stores.close();
      rmSync(dataDir, { recursive: true, force: true });
      rmSync(agentDir, { recursive: true, force: true });
    }
  });

  test('a stop part-way through finish is completed at the next start; a next CA a stopped start never recorded is removed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-settle-'));
    try {
      const [current, next] = await Promise.all([createCa(new Date()), createCa(new Date(Date.now() + 1000))]);
      const put = (name: string, text: string): void => writeFileSync(join(dataDir, name), text);
      put('ca.crt', current.certPem);
      put('ca.key', current.keyPem);
      put('ca-next.crt', next.certPem);
      put('ca-next.key', next.keyPem);
      // Interrupted start: the record says standby with no bundle naming the next CA.
      settleInterruptedRotation(dataDir, log, new Date());
      assert.ok(!existsSync(join(dataDir, 'ca-next.crt')) && !existsSync(join(dataDir, 'ca-next.key')));
      assert.equal(readFileSync(join(dataDir, 'ca.crt'), 'utf8'), current.certPem);

      // Interrupted finish: the bundle {next} was recorded and the key already moved, the certificate not yet.
      put('ca-next.crt', next.certPem);
      put('ca.key', next.keyPem);
      writeCaRotation(dataDir, { phase: 'standby', bundle: bundle(2, [next.certPem], next.keyPem) });
      settleInterruptedRotation(dataDir, log, new Date());
      assert.equal(readFileSync(join(dataDir, 'ca.crt'), 'utf8'), next.certPem);
      assert.equal(readFileSync(join(dataDir, 'ca.key'), 'utf8'), next.keyPem);
      assert.ok(!existsSync(join(dataDir, 'ca-next.crt')));
      assert.equal(readdirSync(dataDir).filter((name) => name.startsWith('ca-retired-')).length, 1);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a start stopped between its file writes in a second rotation leaves the CA key alone; a next key that is not its certificate\'s is never renamed over ca.key', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-settle-'));
    try {
      const caKeyMatches = (): boolean => new X509Certificate(readFileSync(join(dataDir, 'ca.crt'), 'utf8')).checkPrivateKey(createPrivateKey(readFileSync(join(dataDir, 'ca.key'), 'utf8')));
      const start = new Date();
      await ensureTlsMaterial(dataDir, ['localhost'], start);
      let record = readCaRotation(dataDir);
      for (const [phase, offset] of [['update-clients', 0], ['update-servers', 0], ['standby', 2000]] as const) record = await enterPhase(dataDir, record, phase, new Date(start.getTime() + offset));
      const rotatedKey = readFileSync(join(dataDir, 'ca.key'), 'utf8');
      assert.ok(caKeyMatches(), 'the first rotation finished');

      // Second start: the key cannot be written (a kill -9 or a full disk right after the certificate).
      mkdirSync(join(dataDir, 'ca-next.key'));
      await assert.rejects(enterPhase(dataDir, record, 'update-clients', new Date(start.getTime() + 4000)), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_DATA_DIR_UNUSABLE');
      assert.deepEqual(readdirSync(dataDir).filter((name) => name.endsWith('.tmp')), [], 'the failed write left no temporary file');
      rmSync(join(dataDir, 'ca-next.key'), { recursive: true });
      settleInterruptedRotation(dataDir, log, new Date());
      assert.equal(readFileSync(join(dataDir, 'ca.key'), 'utf8'), rotatedKey, 'ca.key kept');
      assert.ok(caKeyMatches() && !existsSync(join(dataDir, 'ca-next.crt')));

      // The state an older writer left (the key first, then stopped): ca.crt equals the finished bundle, yet this is no finish.
      const stray = await createCa(new Date(start.getTime() + 6000));
      writeFileSync(join(dataDir, 'ca-next.key'), stray.keyPem);
      settleInterruptedRotation(dataDir, log, new Date());
      assert.equal(readFileSync(join(dataDir, 'ca.key'), 'utf8'), rotatedKey, 'ca.key kept');
      assert.ok(!existsSync(join(dataDir, 'ca-next.key')), 'the stray key removed');

      // A finish whose ca-next.key is not the key of ca-next.crt stops before it touches anything.
      const next = await createCa(new Date(start.getTime() + 8000));
      writeFileSync(join(dataDir, 'ca-next.crt'), next.certPem);
      writeFileSync(join(dataDir, 'ca-next.key'), stray.keyPem);
      writeCaRotation(dataDir, { phase: 'standby', bundle: bundle(record.bundle!.generation + 1, [next.certPem], next.keyPem) });
      assert.throws(() => settleInterruptedRotation(dataDir, log, new Date()), (error: unknown) => error instanceof CtOpsError && error.code === 'ERR_DATA_DIR_UNUSABLE' && /is not the key of/.test(error.message));
      assert.equal(readFileSync(join(dataDir, 'ca.key'), 'utf8'), rotatedKey, 'ca.key kept');
      assert.ok(caKeyMatches() && existsSync(join(dataDir, 'ca-next.key')));
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('a server key and certificate that a stopped rotate-server left apart are reissued at the next start, so the listener starts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'ct-ops-pair-'));
    try {
      await ensureTlsMaterial(dataDir, ['localhost'], new Date());
      // The state a stop between the two writes of `certs rotate-server` leaves: the new key beside the old certificate.
      const other = await createCa(new Date());
      writeFileSync(join(dataDir, 'server.key'), other.keyPem);
      const tls = await ensureTlsMaterial(dataDir, ['localhost'], new Date());
      assert.equal(tls.issuedServerCert, true);
      assert.doesNotThrow(() => createSecureContext({ cert: tls.serverCertPem, key: tls.serverKeyPem }));
      assert.equal((await ensureTlsMaterial(dataDir, ['localhost'], new Date())).issuedServerCert, false, 'a matching pair is kept');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  test('rotation steps follow start → switch → finish, and switch waits for every active host unless forced, naming pending hosts too', () => {
    assert.equal(nextPhase('standby', 'start', { unacknowledged: [], pending: [], force: false }), 'update-clients');
    const outOfOrder = nextPhase('standby', 'switch', { unacknowledged: [], pending: [], force: false });
    assert.ok(outOfOrder instanceof CtOpsError && outOfOrder.code === 'ERR_CA_ROTATION_STATE');
    const waiting = nextPhase('update-clients', 'switch', { unacknowledged: ['db-1 (hst_1)'], pending: ['new-1 (hst_2)'], force: false });
    assert.ok(waiting instanceof CtOpsError && waiting.code === 'ERR_CA_ROTATION_UNACKNOWLEDGED' && waiting.message.includes('db-1 (hst_1)'));
    assert.match(waiting.message, /1 pending host\(s\) get no bundle until approved: new-1 \(hst_2\)/);
    assert.equal(nextPhase('update-clients', 'switch', { unacknowledged: ['db-1 (hst_1)'], pending: [], force: true }), 'update-servers');
    assert.equal(nextPhase('update-servers', 'finish', { unacknowledged: [], pending: [], force: false }), 'standby');
    const again = nextPhase('update-clients', 'start', { unacknowledged: [], pending: [], force: false });
    assert.ok(again instanceof CtOpsError && again.code === 'ERR_CA_ROTATION_STATE');
  });
});

describe('the trust digest on the wire', () => {
  const ingest = useIngestFixture();

  test('a heartbeat whose trust_digest is neither empty nor 32 bytes is refused by name', async () => {
    const { hostId, jwt } = await ingest.enrol({ hostname: 'digest-length' });
    const stream = await ingest.openStream(hostId, jwt);
    stream.send(hostId, 2, { trust_digest: Buffer.alloc(31) });
    const ended = await stream.ended;
    assert.equal(codeFromGrpcDetails(ended.details), 'ERR_INVALID_ARGUMENT', ended.details);
    assert.match(ended.details, /trust_digest must be empty or a 32-byte SHA-256/);
  });
});
