import type { FastifyInstance } from 'fastify';
import { handleClientError } from './errors.ts';

/**
 * How long (ms) a client may send nothing while its request (headers or body) is still arriving.
 * fastify sets no request timeout (requestTimeout 0), so a request whose body stopped short of its
 * Content-Length held its connection and its request for ever (issue 14's fuzz): a few thousand of
 * them, with no credential at all (POST /api/v1/auth/login reads its body), would use up the
 * appliance's file descriptors. Idle time, not total: a large release upload that keeps arriving
 * is never cut, a stalled one is.
 */
export const REQUEST_IDLE_TIMEOUT_MS = 20_000;

/**
 * Ends a request that stopped arriving: ERR_INVALID_ARGUMENT (details.reason
 * ERR_HTTP_REQUEST_TIMEOUT, as Node's own request timeout would be answered through
 * handleClientError), then the connection is closed. The bound holds from the request's first
 * hook until its preHandler, when the request (a JSON body included) has arrived and the work is
 * ours, however long it takes: a bundle build, a live console stream. (A release archive is read
 * as a stream by its handler, after preHandler: that upload, behind admin write access, is not
 * bounded here.)
 */
export async function boundRequestArrival(app: FastifyInstance): Promise<void> {
  app.addHook('onRequest', async (request) => {
    const socket = request.raw.socket;
    socket.setTimeout(REQUEST_IDLE_TIMEOUT_MS);
    // Node asks an incomplete request first (http server's socketOnTimeout): answering here keeps it from
    // destroying the socket silently.
    request.raw.once('timeout', () => handleClientError(Object.assign(new Error('the request stopped arriving'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket));
  });
  app.addHook('preHandler', async (request) => {
    request.raw.socket.setTimeout(0);
  });
}
