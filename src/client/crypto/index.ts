// Client-side protocol crypto (WebCrypto only; runs in Node 20 and browsers).
export * from './errors.js';
export * from './keys.js';
export * from './replay.js';
export * from './envelope.js';
export * from './enrol.js';
export { setupBaseS, importX25519Private, type SenderContext } from './hpke.js';
export { EnvelopeFormatError, splitEnvelope, joinEnvelope } from '../../envelope/envelope-layout.js';
