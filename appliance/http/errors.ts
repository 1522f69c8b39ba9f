import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { CtOpsError } from '../../common/errors.ts';

/**
 * Every failure of the admin API leaves in the catalogue's shape (docs/errors.md):
 * `{"error": {"code", "message", "details"}}` with the HTTP status of its code. These translate
 * fastify's own errors — a body over the limit, an unknown content type, bad JSON, a schema
 * violation, a malformed URL or HTTP request — which would otherwise answer in fastify's shape
 * with fastify's codes (FST_ERR_…).
 */

/** Our error for any error a request handler, hook or fastify itself raised. */
export function catalogueError(error: FastifyError | CtOpsError): CtOpsError {
  if (error instanceof CtOpsError) return error;
  const fastify = error as FastifyError;
  if (fastify.validation) {
    const first = fastify.validation[0];
    const missing = first?.params?.missingProperty;
    const field = `${first?.instancePath ?? ''}${typeof missing === 'string' ? `/${missing}` : ''}`.replace(/^\//, '').replaceAll('/', '.');
    return new CtOpsError('ERR_INVALID_ARGUMENT', fastify.message, { field: `${fastify.validationContext ?? 'body'}${field ? `.${field}` : ''}` }, { cause: error });
  }
  if (fastify.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new CtOpsError('ERR_BODY_TOO_LARGE', fastify.message, {}, { cause: error });
  // @fastify/csrf-protection (the console): no CSRF secret cookie, or a token that does not match it.
  if (fastify.code === 'FST_CSRF_MISSING_SECRET' || fastify.code === 'FST_CSRF_INVALID_TOKEN') return new CtOpsError('ERR_CSRF_INVALID', 'the CSRF token is missing or wrong: reload the page and try again', {}, { cause: error });
  if (fastify.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new CtOpsError('ERR_UNSUPPORTED_MEDIA_TYPE', fastify.message, {}, { cause: error });
  const status = fastify.statusCode ?? 500;
  if (status >= 400 && status < 500) return new CtOpsError('ERR_INVALID_ARGUMENT', fastify.message, {}, { cause: error });
  return new CtOpsError('ERR_INTERNAL', 'internal error', {}, { cause: error });
}

/** Sends our error; a code that asks the caller to wait (ERR_LOGIN_LOCKED) also sets Retry-After. */
export function sendCatalogueError(reply: FastifyReply, error: CtOpsError): FastifyReply {
  const retryAfter = error.details.retry_after_secs;
  if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
  return reply.code(error.httpStatus).send({ error: error.toJSON() });
}

/** fastify's setErrorHandler: internal errors are logged with their cause; the rest are the caller's. */
export function handleRequestError(error: FastifyError | CtOpsError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const known = catalogueError(error);
  if (known.code === 'ERR_INTERNAL') request.log.error({ err: error }, 'request failed');
  return sendCatalogueError(reply, known);
}

/** fastify's setNotFoundHandler: an unknown route or method. */
export function handleNotFound(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  return sendCatalogueError(reply, new CtOpsError('ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`));
}

/** How long (ms) a refused connection is still read (and what arrives dropped) after its answer, before it is closed. */
const LINGER_MS = 2_000;

/**
 * fastify's clientErrorHandler: a request node's HTTP parser refused (a malformed request line or
 * header, headers too large) never reaches fastify's routing, so the answer is written to the socket.
 * The connection then lingers: closed at once while the client was still sending (the rest of a
 * large body, bytes after a request that said Connection: close), the kernel answers that input
 * with a reset, and the client's kernel discards our answer before it is read (issue 14's fuzz: a
 * 64 KiB body one byte longer than its Content-Length got no answer at all). So the parser is let
 * go, what still arrives is read and dropped, our side ends after the answer, and the socket is
 * destroyed LINGER_MS later (or when the client closes first).
 */
export function handleClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  // An answer already being written on this connection would be corrupted by ours (Node's own
  // handler makes the same check on its in-flight response).
  const inFlight = (socket as Socket & { _httpMessage?: { _headerSent?: boolean } })._httpMessage;
  if (!socket.writable || inFlight?._headerSent === true) {
    socket.destroy(error);
    return;
  }
  const known = new CtOpsError('ERR_INVALID_ARGUMENT', 'the HTTP request is malformed', { reason: error.code ?? 'unknown' });
  const body = JSON.stringify({ error: known.toJSON() });
  socket.removeAllListeners('data');
  socket.on('data', () => undefined);
  socket.end(`HTTP/1.1 ${known.httpStatus} Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}
