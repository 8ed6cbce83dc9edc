import type { TLSSocket } from 'node:tls';

/** Where a client certificate's identity is read from. */
export type IdentitySource = 'cn' | 'san-dns' | 'san-email' | 'san-uri';

const sanPrefix = { 'san-dns': 'DNS', 'san-email': 'email', 'san-uri': 'URI' } as const;

/**
 * The identity a TLS peer proved, `undefined` for a peer that presented no certificate, or an
 * Error saying why the connection must be refused. Only a certificate that verified against the
 * listener's CA counts: an unverified one is refused, never treated as anonymous, so a client
 * cannot pass itself off by presenting any certificate it made.
 */
export function certificateIdentity(socket: TLSSocket, from: IdentitySource): string | undefined | Error {
  const cert = socket.getPeerCertificate();
  if (Object.keys(cert).length === 0) return undefined;
  if (!socket.authorized) {
    return new Error(`client certificate refused: ${String(socket.authorizationError ?? 'not verified')}`);
  }
  if (from === 'cn') {
    // Node gives an array when the subject holds several CNs: which one is meant is ambiguous.
    const cn: unknown = cert.subject?.CN;
    if (typeof cn === 'string' && cn !== '') return cn;
    return new Error(Array.isArray(cn) ? 'client certificate has several subject CNs' : 'client certificate has no subject CN');
  }
  const wanted = sanPrefix[from];
  const match = parseSubjectAltName(cert.subjectaltname ?? '').find(([type]) => type === wanted);
  if (match === undefined || match[1] === '') {
    return new Error(`client certificate has no ${wanted} subject alternative name`);
  }
  return match[1];
}

/**
 * Splits Node's `subjectaltname` text ("DNS:a, email:b@c, URI:x") into [type, value] pairs.
 * Node writes values holding separators or quotes as JSON strings, so those are decoded.
 */
export function parseSubjectAltName(text: string): Array<[string, string]> {
  const entries: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let end: number;
    let value: string;
    if (text[colon + 1] === '"') {
      end = colon + 2;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      end += 1;
      value = JSON.parse(text.slice(colon + 1, end)) as string;
    } else {
      const comma = text.indexOf(', ', colon + 1);
      end = comma < 0 ? text.length : comma;
      value = text.slice(colon + 1, end);
    }
    entries.push([type, value]);
    i = text.startsWith(', ', end) ? end + 2 : end;
  }
  return entries;
}
