import { connect, createServer, type Socket } from 'node:net';
import { once } from 'node:events';

export interface SourceRelay {
  /** The port on 127.0.0.1 to connect to instead of the target. */
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A TCP relay on 127.0.0.1 that opens each client's connection to 127.0.0.1:targetPort
 * from `sourceAddress` (another loopback address such as 127.0.0.2), so the server sees
 * that source: grpc-js clients, the agent among them, cannot bind their local address.
 * TLS passes through untouched.
 */
export async function startSourceRelay(targetPort: number, sourceAddress: string): Promise<SourceRelay> {
  const sockets = new Set<Socket>();
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => socket.destroy());
  };
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: targetPort, localAddress: sourceAddress });
    track(client);
    track(upstream);
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the relay has no TCP port');
  return {
    port: address.port,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}
