import type { Server, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ListenOptions, Listener, TransportInfo } from './types.js';

/** Gives a stream to the handler in a state that cannot crash the process. */
export function adopt(stream: Duplex): Duplex {
  // An 'error' with no listener would throw out of the event loop; the handler still sees 'close'
  // and may add its own listeners.
  if (!stream.listeners('error').includes(ignore)) stream.on('error', ignore);
  return stream;
}

function ignore(): void {}

/**
 * What the broker keeps about a connection's transport, made as one literal with every field (a
 * spread of the peer into it made V8 keep the fields out of the object, ~40 more bytes each).
 */
export function transportInfo(transport: TransportInfo['transport'], socket: Socket, certificateIdentity?: string): TransportInfo {
  return { transport, remoteAddress: socket.remoteAddress ?? '', remotePort: socket.remotePort, certificateIdentity };
}

/**
 * Binds `server` and wraps it as a Listener. Every raw TCP connection is tracked (so close() can
 * end it), gets TCP_NODELAY (MQTT packets are small and latency-bound), and cannot crash us.
 */
export async function startListener(
  server: Server,
  transport: TransportInfo['transport'],
  opts: ListenOptions,
): Promise<Listener> {
  const sockets = new Set<Socket>();
  // one function for every socket, not a closure (or a once() wrapper) per connection
  const forget = function (this: Socket): void {
    sockets.delete(this);
  };
  server.on('connection', (socket: Socket) => {
    socket.setNoDelay(true);
    // the handler may have adopted it already: a second 'error' listener grew every socket's list by ~150 bytes
    adopt(socket);
    sockets.add(socket);
    socket.on('close', forget);
  });
  if (opts.maxConnections !== undefined) {
    if (!Number.isInteger(opts.maxConnections) || opts.maxConnections < 1) {
      throw new RangeError(`maxConnections must be a positive integer, got ${opts.maxConnections}`);
    }
    server.maxConnections = opts.maxConnections;
    server.on('drop', (data?: { remoteAddress?: string }) => {
      const error = new Error(`${transport} listener is at its limit of ${opts.maxConnections} connections`);
      opts.onError?.(error, data?.remoteAddress);
    });
  }

  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => {
      const where = `${opts.host ?? '*'}:${opts.port}`;
      reject(new Error(`cannot listen for ${transport} on ${where}: ${err.message}`, { cause: err }));
    };
    server.once('error', failed);
    server.listen({ host: opts.host, port: opts.port }, () => {
      server.off('error', failed);
      resolve();
    });
  });
  server.on('error', (err: Error) => opts.onError?.(err));

  const address = server.address();
  if (address === null || typeof address === 'string') {
    throw new Error(`${transport} listener has no TCP address`);
  }
  let closing: Promise<void> | undefined;
  return {
    transport,
    port: address.port,
    host: address.address,
    get connectionCount() {
      return sockets.size;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      });
      return closing;
    },
  };
}
