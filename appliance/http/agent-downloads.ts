import send from '@fastify/send';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { pipeline, Transform, type TransformCallback } from 'node:stream';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { CtOpsError } from '../../common/errors.ts';
import { bearerJwt } from '../auth/agent-jwt.ts';
import { credentialRefusal } from '../hosts/identity.ts';
import { mayReceiveWork } from '../hosts/status.ts';
import { RELEASE_SIGNATURE_FILE, RELEASE_SUMS_FILE, RELEASE_VERSION_SOURCE } from '../../common/release-version.ts';
import type { HttpContext } from './context.ts';

/** Limits on serving agent releases, so a fleet-wide rollout cannot starve heartbeats of CPU or bandwidth. */
export interface DownloadLimits {
  /** Downloads served at once; one more is answered 503 ERR_DOWNLOAD_BUSY with Retry-After. */
  readonly concurrent: number;
  /** Bytes per second shared by every download of this instance. */
  readonly bytesPerSecond: number;
}

/**
 * The defaults of agent_download_concurrency and agent_download_rate_mib (config/load.ts): 16 at
 * once at 64 MiB/s in all, a 110 MB executable in under 2 s alone, about 28 s when 16 share the
 * rate; an agent turned away retries after the Retry-After it is given (retryAfterSecs), resuming
 * where it stopped.
 */
export const DEFAULT_DOWNLOAD_LIMITS: DownloadLimits = { concurrent: 16, bytesPerSecond: 64 * 1024 * 1024 };

/** Bounds of the Retry-After (s) of a download turned away for being one too many. */
export const DOWNLOAD_RETRY_AFTER_MIN_SECS = 5;
export const DOWNLOAD_RETRY_AFTER_MAX_SECS = 30;

/**
 * The Retry-After (s) for a download turned away: about how long until a place frees — the average
 * time a download held its place (`averageHeldMs`, measured) over the places, so turned-away agents
 * come back as places free rather than all after one fixed wait that leaves places idle; within
 * DOWNLOAD_RETRY_AFTER_MIN_SECS..MAX_SECS (the agents spread their returns themselves). The floor
 * bounds the refusals a wave costs: 1,000 agents back every second were ~1,000 requests a second of
 * the appliance's CPU for nothing (bench:update).
 */
export function retryAfterSecs(averageHeldMs: number, concurrent: number): number {
  const secs = Math.ceil(averageHeldMs / concurrent / 1000);
  return Math.min(DOWNLOAD_RETRY_AFTER_MAX_SECS, Math.max(DOWNLOAD_RETRY_AFTER_MIN_SECS, secs));
}

/**
 * Downloads one host may have at once: the agent fetches its files one after another, and a second
 * covers a restarted agent whose first connection is still closing. More would let one host (a
 * misbehaving or stolen credential) hold the places a fleet shares.
 */
export const DOWNLOADS_PER_HOST = 2;

/** Weight of the latest download in the moving average of how long downloads hold their place. */
const HELD_AVERAGE_WEIGHT = 0.2;

/**
 * `GET /agent/v1/releases/:version/:file`: an imported release's file for an agent that may receive
 * work (bearer: its JWT, refused as on the ingest port when issued before a key rotation), with Range support (RFC 9110 14: 206, 416; an
 * interrupted download resumes), ETag and Last-Modified. Only a file the release's signed
 * SHA256SUMS lists, or SHA256SUMS and its signature, of a release not retired, is served; nothing else under the data
 * directory can be named. Served through one shared byte-rate limit and at most `concurrent` at
 * once (ctx.downloadLimits, default DEFAULT_DOWNLOAD_LIMITS), DOWNLOADS_PER_HOST of them for one host
 * (ERR_DOWNLOAD_BUSY, 503, Retry-After). Errors: ERR_JWT_*, ERR_AGENT_NOT_ACTIVE,
 * ERR_RELEASE_NOT_FOUND (not imported, not a file of it, or its files not on this instance),
 * ERR_RANGE_NOT_SATISFIABLE (416, with the file's length in Content-Range).
 */
export async function agentDownloadRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { releases } = ctx.services;
  const limits = ctx.downloadLimits ?? DEFAULT_DOWNLOAD_LIMITS;
  const throttle = new SharedByteRate(limits.bytesPerSecond);
  let serving = 0;
  /** Downloads being served per host id; a host with none has no entry. */
  const servingHost = new Map<string, number>();
  /** How long a download holds its place, on average (ms): an exponential moving average; 0 until one ended. */
  let averageHeldMs = 0;

  /** Throws ERR_DOWNLOAD_BUSY (503, with its Retry-After) saying `why`. */
  const turnAway = (reply: FastifyReply, why: string, details?: ConstructorParameters<typeof CtOpsError>[2]): never => {
    const retryAfter = retryAfterSecs(averageHeldMs, limits.concurrent);
    reply.header('retry-after', String(retryAfter));
    throw new CtOpsError('ERR_DOWNLOAD_BUSY', `${why}; retry in ${retryAfter} s`, details);
  };
  /** Turns the request away when every place is taken. */
  const turnAwayWhenFull = (reply: FastifyReply): void => {
    if (serving >= limits.concurrent) turnAway(reply, `${limits.concurrent} downloads are being served`);
  };

  app.get<{ Params: { version: string; file: string } }>('/agent/v1/releases/:version/:file', {
    schema: {
      params: {
        type: 'object',
        required: ['version', 'file'],
        properties: { version: { type: 'string', pattern: `^${RELEASE_VERSION_SOURCE}$` }, file: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } },
      },
    },
    handler: async (request, reply) => {
      // Turned away before any work (a signature check, a database read): in a wave most requests are.
      turnAwayWhenFull(reply);
      const now = Date.now();
      const credential = await ctx.jwt.verify(bearerJwt(request.headers.authorization), now);
      const host = await ctx.stores.hosts.get(credential.agentId);
      if (!host || !mayReceiveWork(host)) throw new CtOpsError('ERR_AGENT_NOT_ACTIVE', 'only an active host may download agent releases', { host_id: credential.agentId });
      // A JWT issued before the host's key rotation belongs to the retired clone (as on the ingest port).
      const stale = credentialRefusal(host, credential.issuedAt);
      if (stale) throw stale;
      const { version, file } = request.params;
      const imported = await releases.get(version);
      if (imported.retiredAt !== null) throw new CtOpsError('ERR_RELEASE_NOT_FOUND', `agent release ${version} is retired`, { version });
      if (!imported.files.some((listed) => listed.name === file) && file !== RELEASE_SUMS_FILE && file !== RELEASE_SIGNATURE_FILE) {
        throw new CtOpsError('ERR_RELEASE_NOT_FOUND', `agent release ${version} has no file ${file}`, { version });
      }
      // Asked again after the waits above (places may have filled meanwhile), then counted from here
      // until the response is sent whole or closes, whatever happens on the way (no await before the listeners).
      turnAwayWhenFull(reply);
      const ofHost = servingHost.get(host.id) ?? 0;
      if (ofHost >= DOWNLOADS_PER_HOST) turnAway(reply, `this host has ${DOWNLOADS_PER_HOST} downloads being served already`, { host_id: host.id });
      serving += 1;
      servingHost.set(host.id, ofHost + 1);
      const heldFrom = Date.now();
      let counted = true;
      const uncount = (): void => {
        if (!counted) return;
        counted = false;
        serving -= 1;
        const left = servingHost.get(host.id)! - 1;
        if (left === 0) servingHost.delete(host.id);
        else servingHost.set(host.id, left);
        const heldMs = Date.now() - heldFrom;
        averageHeldMs = averageHeldMs === 0 ? heldMs : averageHeldMs + HELD_AVERAGE_WEIGHT * (heldMs - averageHeldMs);
      };
      // 'finish' as soon as the last byte is handed to the socket: 'close' comes a turn later, and an
      // agent that got the whole file could ask again on its kept-alive connection before it, and be turned away.
      reply.raw.once('finish', uncount);
      reply.raw.once('close', uncount);
      // The agent may have gone during the lookups above: its 'close' was before the listener.
      if (reply.raw.destroyed) return void uncount();
      // The name was checked against the release above: send serves it from the release's folder only.
      const sent = await send(request.raw, `/${file}`, { root: releases.folderOf(version), dotfiles: 'deny', index: false, cacheControl: false, contentType: false });
      if (sent.type === 'error' && sent.statusCode === 416) {
        // RFC 9110 15.5.17: the current length, so the agent can tell its partial file is longer than the release's.
        reply.header('content-range', sent.headers['Content-Range']);
        throw new CtOpsError('ERR_RANGE_NOT_SATISFIABLE', `the range asked for is outside agent release ${version}'s ${file}; download it again from the start`, { version });
      }
      if (sent.type !== 'file') {
        throw new CtOpsError('ERR_RELEASE_NOT_FOUND', `agent release ${version}'s ${file} is not on this appliance instance (import the release here too)`, { version });
      }
      reply.code(sent.statusCode).headers({ ...sent.headers, 'content-type': 'application/octet-stream' });
      if (sent.statusCode !== 200 && sent.statusCode !== 206) return reply.send(sent.stream);
      // pipeline: an agent that goes away destroys the throttle (fastify), and with it the file stream.
      const throttled = throttle.stream();
      pipeline(sent.stream, throttled, () => undefined);
      return reply.send(throttled);
    },
  });
}

/**
 * One byte rate shared by every stream made with `stream()` (RateLimiterMemory's points as bytes per
 * second): each chunk waits until the second it falls in has room for it.
 */
class SharedByteRate {
  readonly #limiter: RateLimiterMemory;
  readonly #bytesPerSecond: number;

  constructor(bytesPerSecond: number) {
    this.#bytesPerSecond = bytesPerSecond;
    this.#limiter = new RateLimiterMemory({ keyPrefix: 'agent-downloads', points: bytesPerSecond, duration: 1 });
  }

  stream(): Transform {
    const take = async (bytes: number): Promise<void> => {
      for (;;) {
        try {
          await this.#limiter.consume('all', bytes);
          return;
        } catch (refusal) {
          if (!(refusal instanceof RateLimiterRes)) throw refusal;
          await new Promise((resolve) => setTimeout(resolve, Math.max(refusal.msBeforeNext, 1)));
        }
      }
    };
    const bytesPerSecond = this.#bytesPerSecond;
    return new Transform({
      transform(chunk: Buffer, _encoding, done: TransformCallback) {
        // A chunk larger than a second's budget passes in slices of one budget each.
        const slices: Buffer[] = [];
        for (let offset = 0; offset < chunk.length; offset += bytesPerSecond) slices.push(chunk.subarray(offset, offset + bytesPerSecond));
        (async () => {
          for (const slice of slices) {
            await take(slice.length);
            this.push(slice);
          }
        })().then(() => done(), done);
      },
    });
  }
}
