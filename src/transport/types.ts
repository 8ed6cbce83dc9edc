import type { Duplex } from 'node:stream';

/** What the broker learns about an accepted connection, besides its bytes. */
export interface TransportInfo {
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  remoteAddress: string;
  remotePort?: number;
  /** Identity proven by a verified client certificate (mutual TLS), else undefined. */
  certificateIdentity?: string;
}

/**
 * Receives every accepted byte stream. The transport knows nothing of MQTT: the handler owns the
 * stream from here on, and `stream.destroy()` closes the underlying socket.
 */
export type ConnectionHandler = (stream: Duplex, info: TransportInfo) => void;

/**
 * Told about what never reaches the connection handler: connections refused before it (failed
 * handshakes, over the limit, no usable identity; with the peer's address) and server errors.
 */
export type TransportErrorHandler = (error: Error, remoteAddress?: string) => void;

export interface Listener {
  readonly transport: TransportInfo['transport'];
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** The bound address, e.g. "127.0.0.1" or "::". */
  readonly host: string;
  /** Connections currently open on this listener. */
  readonly connectionCount: number;
  /**
   * Stops accepting at once, destroys the connections still open (a graceful broker ends its
   * sessions first), and resolves when the server is closed.
   */
  close(): Promise<void>;
}

/** Options every listener shares. */
export interface ListenOptions {
  host?: string;
  port: number;
  /** Further connections are dropped on accept while this many are open on this listener. */
  maxConnections?: number;
  /** Optional; without it such errors are dropped silently (never thrown). */
  onError?: TransportErrorHandler;
}
