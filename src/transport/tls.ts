import { createSecureContext, createServer, type Server, type TLSSocket, type TlsOptions as NodeTlsOptions } from 'node:tls';
import { certificateIdentity, type IdentitySource } from './identity.js';
import { adopt, startListener, transportInfo } from './server.js';
import type { ConnectionHandler, ListenOptions, Listener, TransportErrorHandler } from './types.js';

export type { IdentitySource } from './identity.js';

/** The TLS part of a listener's settings: what the TLS and secure WebSocket listeners share. */
export interface TlsSettings {
  /** PEM private key and certificate (chain) of the server. */
  key: string | Buffer;
  cert: string | Buffer;
  /** PEM CA certificate(s) that client certificates must chain to; needed unless clientCerts is 'none'. */
  ca?: string | Buffer;
  /**
   * 'none': no client certificate asked for. 'optional': asked for; a client without one is
   * anonymous, one with a certificate that does not verify is refused. 'required' (mutual TLS):
   * a client without a verified certificate is refused during the handshake.
   */
  clientCerts: 'none' | 'optional' | 'required';
  /** Where the authenticated identity comes from: subject CN (default) or the first SAN of a given type. */
  identityFrom?: IdentitySource;
}

export interface TlsOptions extends ListenOptions, TlsSettings {}

/** Node TLS server options for these settings; throws a specific error for unusable ones. */
export function tlsServerOptions(opts: TlsSettings): NodeTlsOptions {
  if (!['none', 'optional', 'required'].includes(opts.clientCerts)) {
    throw new TypeError(`clientCerts must be 'none', 'optional' or 'required', got ${String(opts.clientCerts)}`);
  }
  if (opts.identityFrom !== undefined && !['cn', 'san-dns', 'san-email', 'san-uri'].includes(opts.identityFrom)) {
    throw new TypeError(`identityFrom must be 'cn', 'san-dns', 'san-email' or 'san-uri', got ${String(opts.identityFrom)}`);
  }
  // Without an explicit CA Node would trust its public root store, letting anyone with a
  // publicly issued certificate claim an identity here.
  if (opts.clientCerts !== 'none' && (opts.ca === undefined || opts.ca.length === 0)) {
    throw new TypeError(`clientCerts '${opts.clientCerts}' needs a ca to verify client certificates against`);
  }
  const options: NodeTlsOptions = {
    key: opts.key,
    cert: opts.cert,
    ca: opts.ca,
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    requestCert: opts.clientCerts !== 'none',
    rejectUnauthorized: opts.clientCerts === 'required',
  };
  try {
    createSecureContext(options);
  } catch (err) {
    throw new Error(`invalid TLS key, certificate or CA: ${(err as Error).message}`, { cause: err });
  }
  return options;
}

/**
 * Decides on a TLS connection whose handshake finished: admitted with its certificate identity
 * (undefined when anonymous), or refused, reported to onError and destroyed.
 */
export function admitTlsPeer(
  socket: TLSSocket,
  opts: TlsSettings & { onError?: TransportErrorHandler },
): { admitted: true; identity: string | undefined } | { admitted: false } {
  if (opts.clientCerts === 'none') return { admitted: true, identity: undefined };
  const identity = certificateIdentity(socket, opts.identityFrom ?? 'cn');
  if (identity instanceof Error || (identity === undefined && opts.clientCerts === 'required')) {
    refuse(socket, identity ?? new Error('client certificate required'), opts.onError);
    return { admitted: false };
  }
  return { admitted: true, identity };
}

/** A failed handshake (bad certificate, plain TCP on a TLS port) only concerns that connection. */
export function refuseFailedHandshakes(server: Server, onError: TransportErrorHandler | undefined): void {
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => refuse(socket, err, onError));
}

function refuse(socket: TLSSocket, error: Error, onError: TransportErrorHandler | undefined): void {
  onError?.(error, socket.remoteAddress);
  socket.destroy();
}

export interface TlsListener extends Listener {
  /**
   * New key, certificate and CA for every later handshake (renewed certificates, SIGHUP);
   * connections already open keep theirs. Throws, changing nothing, if they are unusable.
   */
  replaceCertificates(files: Pick<TlsSettings, 'key' | 'cert' | 'ca'>): void;
}

/** MQTT over TLS (port 8883): TLS 1.2 minimum, 1.3 preferred, optionally mutual. */
export async function listenTls(opts: TlsOptions, onConnection: ConnectionHandler): Promise<TlsListener> {
  const server = createServer(tlsServerOptions(opts), (socket: TLSSocket) => {
    const verdict = admitTlsPeer(socket, opts);
    if (!verdict.admitted) return;
    onConnection(adopt(socket), transportInfo('tls', socket, verdict.identity));
  });
  refuseFailedHandshakes(server, opts.onError);
  const listener = await startListener(server, 'tls', opts);
  return {
    transport: listener.transport,
    port: listener.port,
    host: listener.host,
    get connectionCount() {
      return listener.connectionCount;
    },
    close: () => listener.close(),
    replaceCertificates(files) {
      server.setSecureContext(tlsServerOptions({ ...opts, ...files }));
    },
  };
}
