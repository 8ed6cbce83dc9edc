import { STATUS_CODES, createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import { adopt, startListener, transportInfo } from './server.js';
import { admitTlsPeer, refuseFailedHandshakes, tlsServerOptions, type TlsSettings } from './tls.js';
import type { ConnectionHandler, ListenOptions, Listener, TransportInfo } from './types.js';

export interface WebSocketOptions extends ListenOptions {
  /** URL path clients connect to; default "/mqtt" (the de-facto standard). */
  path?: string;
  /** Serve wss:// with these TLS settings (a full TlsOptions works too: its host, port and limits are ignored). */
  tls?: TlsSettings;
}

// "mqtt" is what MQTT 3.1.1 and 5.0 register; "mqttv3.1" is what MQTT 3.1 clients still send.
const SUBPROTOCOLS = ['mqtt', 'mqttv3.1'];

/**
 * MQTT over WebSockets (ws:// or wss://). Each binary message's bytes flow through the stream;
 * MQTT forbids text frames, so one closes the connection before its bytes reach the handler.
 */
export async function listenWebSocket(opts: WebSocketOptions, onConnection: ConnectionHandler): Promise<Listener> {
  const path = opts.path ?? '/mqtt';
  if (!path.startsWith('/')) throw new TypeError(`WebSocket path must start with "/", got "${path}"`);
  const transport: TransportInfo['transport'] = opts.tls ? 'wss' : 'ws';
  const tls = opts.tls ? { ...opts.tls, onError: opts.onError } : undefined;
  const server = tls ? createHttpsServer(tlsServerOptions(tls)) : createHttpServer();
  // Clients that do not offer an MQTT subprotocol are still served, without one (lenient, like
  // other brokers); browsers then decide for themselves.
  const wss = new WebSocketServer({
    noServer: true,
    perMessageDeflate: false,
    handleProtocols: (offered: Set<string>) => SUBPROTOCOLS.find((p) => offered.has(p)) ?? false,
  });

  server.on('request', (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(426, { Upgrade: 'websocket', 'Content-Type': 'text/plain' });
    res.end(`this is an MQTT over WebSocket endpoint: connect a WebSocket to ${path}\n`);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (pathOf(req.url) !== path) {
      refuseUpgrade(socket, 404);
      return;
    }
    let certificateIdentity: string | undefined;
    if (tls) {
      const verdict = admitTlsPeer(req.socket as TLSSocket, tls);
      if (!verdict.admitted) return;
      certificateIdentity = verdict.identity;
    }
    wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const stream = createWebSocketStream(ws);
      // Runs before the stream's own listener, so a text frame's bytes are never pushed.
      ws.prependListener('message', (_data: unknown, isBinary: boolean) => {
        if (isBinary) return;
        opts.onError?.(new Error('MQTT over WebSocket allows binary frames only'), req.socket.remoteAddress);
        stream.destroy();
      });
      onConnection(adopt(stream), transportInfo(transport, req.socket as Socket, certificateIdentity));
    });
  });
  if (tls) refuseFailedHandshakes(server as TlsServer, opts.onError);
  return startListener(server, transport, opts);
}

function pathOf(url = ''): string {
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

function refuseUpgrade(socket: Duplex, status: number): void {
  socket.once('error', () => {});
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  socket.once('finish', () => socket.destroy());
}
