import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadIngestProto, type IngestServiceClient, type RegisterChallenge__Output, type RegisterRequest } from '../../common/proto.ts';
import { registerPayload, toRegisterRequest, type RegisterFreshness, type RegisterHostFields } from '../../common/register-payload.ts';

/** An Ed25519 public key's length (bytes, RFC 8032). */
const ED25519_PUBLIC_KEY_BYTES = 32;

/**
 * Makes one grpc-js client, on its own TLS connection, per call, all trusting the appliance CA.
 * The server's name is not checked: the CA is the data directory's own (pinned, never the
 * system's), and the address is loopback, which the appliance's SANs need not name.
 */
export function clientFactory(address: string, caPem: string): (connectionIndex: number) => IngestServiceClient {
  const Service = loadIngestProto().ctops.ingest.v1.IngestService;
  const credentials = grpc.credentials.createSsl(Buffer.from(caPem), null, null, { checkServerIdentity: () => undefined });
  // grpc-js shares a subchannel (one TCP/TLS connection) between channels with equal
  // options; a private pool gives each client its own connection, as real agents have.
  // TLS server names (SNI) must not be IP addresses (RFC 6066; Node warns): the name sent is not checked anyway.
  const options = { 'grpc.use_local_subchannel_pool': 1, 'grpc.ssl_target_name_override': 'localhost' };
  return (connectionIndex) => new Service(address, credentials, { ...options, 'grpc.ctops_load_connection': connectionIndex });
}

/** Connects (TCP + TLS + HTTP/2) before anything is timed. */
export function connect(client: IngestServiceClient, timeoutMs = 30_000): Promise<void> {
  return new Promise((resolve, reject) => {
    client.waitForReady(Date.now() + timeoutMs, (error) => (error ? reject(error) : resolve()));
  });
}

/**
 * One connection attempt, as the agent's call makes it: resolves when the channel is READY, fails at
 * its first TRANSIENT_FAILURE (refused, reset, a failed handshake) or after timeoutMs, so that the
 * caller's backoff, not grpc-js's own reconnect schedule, decides when the next attempt is made.
 */
export function connectOnce(client: IngestServiceClient, timeoutMs: number): Promise<void> {
  const channel = client.getChannel();
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const settle = (state: grpc.connectivityState): void => {
      if (state === grpc.connectivityState.READY) return resolve();
      if (state === grpc.connectivityState.TRANSIENT_FAILURE || state === grpc.connectivityState.SHUTDOWN) {
        return reject(Object.assign(new Error(`connection attempt failed (${grpc.connectivityState[state]})`), { code: grpc.status.UNAVAILABLE }));
      }
      channel.watchConnectivityState(state, deadline, (error) => {
        if (error) reject(Object.assign(new Error(`no connection within ${timeoutMs} ms`), { code: grpc.status.DEADLINE_EXCEEDED }));
        else settle(channel.getConnectivityState(false));
      });
    };
    settle(channel.getConnectivityState(true));
  });
}

/** Builds an agent's Register request on its connection: fetching a challenge first, or signed up front. */
export type RegisterSource = (client: IngestServiceClient) => Promise<RegisterRequest>;

/** A distinct simulated host: its own Ed25519 key and machine fingerprint, so none is held pending as a clone. */
function simulatedHost(index: number, orgToken: string, hostnamePrefix: string): { fields: RegisterHostFields; privateKey: KeyObject } {
  // Encoded by the key generation itself, not exported from its KeyObjects afterwards: Node 20 deadlocked
  // (a generator process stuck in a futex wait before making its agents) when a collection during such an
  // export destroyed the finished generation job, which locks the key the export holds locked.
  const { publicKey, privateKey } = generateKeyPairSync('ed25519', { publicKeyEncoding: { type: 'spki', format: 'der' }, privateKeyEncoding: { type: 'pkcs8', format: 'der' } });
  const fields = {
    // The raw key is the end of its SubjectPublicKeyInfo (RFC 8410).
    publicKey: publicKey.subarray(-ED25519_PUBLIC_KEY_BYTES),
    orgToken,
    hostname: `${hostnamePrefix}-${String(index).padStart(5, '0')}`,
    machineFingerprint: createHash('sha256').update(randomBytes(16)).digest('hex'),
    os: 'linux',
    arch: 'x64',
    agentVersion: '0.1.0-load',
    tags: {},
  };
  return { fields, privateKey: createPrivateKey({ key: privateKey, format: 'der', type: 'pkcs8' }) };
}

function signedRequest(host: { fields: RegisterHostFields; privateKey: KeyObject }, freshness: RegisterFreshness): RegisterRequest {
  const fields = { ...host.fields, ...freshness };
  return toRegisterRequest(fields, sign(null, registerPayload(fields), host.privateKey));
}

/**
 * Legacy (register/v1: timestamp and nonce) Register requests for `count` distinct agents, numbered
 * from `firstIndex`. Signed up front with node:crypto so a timed phase measures the appliance, not the signer.
 */
export function signedRegisterRequests(count: number, orgToken: string, firstIndex = 0, hostnamePrefix = 'bench'): RegisterRequest[] {
  return Array.from({ length: count }, (_, offset) => signedRequest(simulatedHost(firstIndex + offset, orgToken, hostnamePrefix), { timestampUnixMs: Date.now(), nonce: randomBytes(16) }));
}

/**
 * Register sources for `count` distinct agents that register as current agents do (register/v2):
 * GetRegisterChallenge on the agent's connection, then a Register signed over that challenge.
 * Keys are made up front; only the signature over the challenge is made while registering.
 */
export function challengedRegisterSources(count: number, orgToken: string, firstIndex = 0, hostnamePrefix = 'load'): RegisterSource[] {
  return Array.from({ length: count }, (_, offset) => {
    const host = simulatedHost(firstIndex + offset, orgToken, hostnamePrefix);
    return async (client) => signedRequest(host, { challenge: (await registerChallenge(client)).challenge });
  });
}

function registerChallenge(client: IngestServiceClient): Promise<RegisterChallenge__Output> {
  return new Promise((resolve, reject) => {
    client.GetRegisterChallenge({}, { deadline: Date.now() + 30_000 }, (error, response) => (error ? reject(error) : resolve(response!)));
  });
}
