/**
 * The floor for ct-ops-loadtest (issue 14: "the bare floor measured in the same run: keep a bare
 * server in the repository"): a grpc-js TLS server on the appliance's own transport settings and
 * listener (INGEST_TRANSPORT_OPTIONS, the 65,535 backlog) that does only what the wire demands —
 * a challenge is random bytes, every Register is ACTIVE unchecked, every heartbeat is acked at once,
 * an inventory scan is read and counted. No store, no presence, no signatures: what a run measures
 * against it is grpc-js, TLS and HTTP/2 on this machine, and the appliance's figures divided by
 * these are its own cost.
 *
 * It makes a data directory the generator reads as it reads an appliance's (ca.crt, appliance.json,
 * admin-cli.token) and answers the three admin calls a run makes (create and revoke its token, the
 * runtime report with the same event-loop windows), so the same command drives both:
 *   node --import tsx loadtest/floor-server.ts --data-dir /tmp/floor &
 *   ct-ops-loadtest --data-dir /tmp/floor --agents 18000 --processes 2 …
 * Loopback only; it runs until SIGTERM or SIGINT.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Command, Option } from 'commander';
import { INGEST_TRANSPORT_OPTIONS, listenOn } from '../appliance/grpc/server.ts';
import { EventLoopWatch, runtimeReport } from '../appliance/health/event-loop-watch.ts';
import { CLI_CREDENTIAL_FILE, ENDPOINT_FILE } from '../appliance/lib/data-dir-files.ts';
import { createLogger } from '../appliance/lib/logger.ts';
import { ensureTlsMaterial } from '../appliance/pki/certificates.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, writeFileAtomic } from '../appliance/pki/files.ts';
import { runCli } from '../common/cli.ts';
import { loadIngestProto, type HeartbeatRequest__Output, type HeartbeatResponse, type RegisterResponse, type SoftwareInventoryChunk__Output } from '../common/proto.ts';

const LOOPBACK = '127.0.0.1';
/** A challenge's lifetime as the appliance states it (the generator signs at once). */
const CHALLENGE_TTL_MS = 60_000;

interface Options {
  dataDir: string;
  grpcPort: number;
}

/** The floor's Register: ACTIVE for any request, an id from a counter, a JWT nobody checks. */
function registerAnswer(next: () => number): grpc.handleUnaryCall<unknown, RegisterResponse> {
  return (_call, callback) => callback(null, { agent_id: `hst_floor${String(next()).padStart(12, '0')}`, status: 'AGENT_STATUS_ACTIVE', jwt: 'floor', jwt_expires_unix: Math.floor(Date.now() / 1000) + 86_400 });
}

/** The floor's Heartbeat: an ack per heartbeat, with the appliance's received time and the agent's offset. */
function heartbeatAnswer(streams: { open: number }): grpc.handleBidiStreamingCall<HeartbeatRequest__Output, HeartbeatResponse> {
  return (call) => {
    streams.open += 1;
    call.on('data', (heartbeat: HeartbeatRequest__Output) => {
      const received = Date.now();
      const sentAt = Number(heartbeat.timestamp_unix_ms);
      call.write({ ack: { sequence: heartbeat.sequence, received_unix_ms: received, clock_offset_ms: sentAt > 0 ? sentAt - received : 0, clock_offset_known: sentAt > 0 } });
    });
    const ended = (): void => {
      streams.open -= 1;
      call.end();
    };
    call.once('end', ended);
    call.once('error', () => undefined);
  };
}

/** The floor's inventory: reads every chunk and answers the counts, storing nothing. */
function inventoryAnswer(): grpc.handleClientStreamingCall<SoftwareInventoryChunk__Output, unknown> {
  return (call, callback) => {
    let received = 0;
    let scanId = '';
    call.on('data', (chunk: SoftwareInventoryChunk__Output) => {
      received += chunk.packages.length;
      scanId = chunk.scan_id;
    });
    call.once('end', () => callback(null, { scan_id: scanId, packages_received: received, added: received, removed: 0, unchanged: 0, skipped: [] }));
    call.once('error', () => undefined);
  };
}

async function serveFloor(options: Options): Promise<void> {
  const log = createLogger('info');
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const tls = await ensureTlsMaterial(options.dataDir, ['localhost', LOOPBACK], new Date());
  const credential = `ctadm_floor_${randomBytes(16).toString('hex')}`;
  writeFileAtomic(join(options.dataDir, CLI_CREDENTIAL_FILE), `${credential}\n`, SECRET_FILE_MODE);

  const streams = { open: 0 };
  let registered = 0;
  const server = new grpc.Server(INGEST_TRANSPORT_OPTIONS);
  server.addService(loadIngestProto().ctops.ingest.v1.IngestService.service, {
    GetRegisterChallenge: (_call: unknown, callback: grpc.sendUnaryData<unknown>) => callback(null, { challenge: randomBytes(32), expires_in_ms: CHALLENGE_TTL_MS, appliance_time_unix_ms: Date.now() }),
    Register: registerAnswer(() => ++registered),
    Heartbeat: heartbeatAnswer(streams),
    SubmitSoftwareInventory: inventoryAnswer(),
  });
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.serverCertPem), private_key: Buffer.from(tls.serverKeyPem) }], false));
  const listener = createServer((socket) => injector.injectConnection(socket));
  const grpcPort = await listenOn(listener, LOOPBACK, options.grpcPort, log);

  const loopWatch = new EventLoopWatch(log).start();
  const admin = createHttpsServer({ cert: tls.serverCertPem, key: tls.serverKeyPem }, (request, response) => {
    const answer = (status: number, body: unknown): void => {
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    request.resume();
    if (request.headers.authorization !== `Bearer ${credential}`) return answer(401, { error: { code: 'ERR_UNAUTHENTICATED', message: 'the floor takes its own admin-cli.token only' } });
    const url = new URL(request.url ?? '/', 'https://floor');
    if (request.method === 'POST' && url.pathname === '/api/v1/tokens') return answer(201, { id: 'tok_floor', token: 'floor' });
    if (request.method === 'POST' && /^\/api\/v1\/tokens\/[^/]+\/revoke$/.test(url.pathname)) return answer(200, { id: 'tok_floor', revoked: true });
    if (request.method === 'GET' && url.pathname === '/api/v1/appliance/runtime') {
      const since = url.searchParams.get('since');
      return answer(200, runtimeReport(streams.open, loopWatch, since === null ? 0 : Date.parse(since)));
    }
    return answer(404, { error: { code: 'ERR_NOT_FOUND', message: `the floor does not serve ${request.method} ${url.pathname}` } });
  });
  await new Promise<void>((resolve) => admin.listen(0, LOOPBACK, resolve));
  const adminPort = (admin.address() as { port: number }).port;
  writeFileAtomic(join(options.dataDir, ENDPOINT_FILE), `${JSON.stringify({ admin_api: `https://${LOOPBACK}:${adminPort}`, grpc_port: grpcPort, pid: process.pid }, null, 2)}\n`, PUBLIC_FILE_MODE);
  log.info({ data_dir: options.dataDir, grpc_port: grpcPort, http_port: adminPort }, 'floor server started');

  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  loopWatch.stop();
  listener.close();
  admin.close();
  server.forceShutdown();
  log.info({ registered }, 'floor server stopped');
}

const program = new Command('ct-ops-loadtest-floor')
  .description("a bare gRPC TLS server that only acks, on the appliance's transport settings: the floor a load run is compared with (loopback only)")
  .addOption(new Option('--data-dir <dir>', 'where to write ca.crt, appliance.json and admin-cli.token for ct-ops-loadtest').makeOptionMandatory())
  .addOption(new Option('--grpc-port <port>', 'the ingest port (0: a free one)').argParser(Number).default(0))
  .action((options: Options) => serveFloor(options));

await runCli(program, process.argv);
process.exit();
