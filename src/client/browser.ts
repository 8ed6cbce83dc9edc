// Browser entry of the client SDK: nothing reachable from here imports `node:` modules
// (test/client/browser.test.ts bundles it for Chromium). Keys live where the application puts them.
export { connectProtected, ProtectedClient, checkIdentity, type ProtectedClientOptions, type ProtectedClientEvents, type MessageInfo } from './protected-client.js';
export { memoryKeyStore, encodeStoredKey, decodeStoredKey, KeyFileError, type KeyStore, type StoredKey } from './key-store.js';
export { TeeRequestError } from './tee-requests.js';
export { TEE_REQUEST_TOPICS } from '../mqtt/tee-topics.js';
export { enrolOverMqtt, fingerprintEndorsedBy, rotateOverMqtt, type TeeContact } from './enrolment.js';
export * from './crypto/index.js';
