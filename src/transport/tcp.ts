import { createServer, type Socket } from 'node:net';
import { adopt, startListener, transportInfo } from './server.js';
import type { ConnectionHandler, ListenOptions, Listener } from './types.js';

/** Plain TCP (MQTT's port 1883): each accepted socket goes to the handler as is. */
export async function listenTcp(opts: ListenOptions, onConnection: ConnectionHandler): Promise<Listener> {
  const server = createServer((socket: Socket) => {
    onConnection(adopt(socket), transportInfo('tcp', socket));
  });
  return startListener(server, 'tcp', opts);
}
