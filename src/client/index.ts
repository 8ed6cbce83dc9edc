// Node entry of the client SDK: the browser entry plus key files (`keyFile` option, 0600), and
// node:crypto for the per-message AES-GCM and SHA-256 instead of WebCrypto.
import { useFastCrypto } from './crypto/webcrypto.js';
import { fileKeyStore } from './key-file.js';
import { nodeCrypto } from './node-crypto.js';
import { connectProtected as connectWithStore, type ProtectedClient, type ProtectedClientOptions } from './protected-client.js';

export * from './browser.js';
export { readKeyFile, writeKeyFile, fileKeyStore, checkKeyFileWritable } from './key-file.js';
export { nodeCrypto } from './node-crypto.js';
export { useFastCrypto, type FastCrypto } from './crypto/webcrypto.js';

useFastCrypto(nodeCrypto);

export interface NodeProtectedClientOptions extends ProtectedClientOptions {
  /** Key file (JSON, mode 0600): loaded if present, else written after a confirmed enrolment. */
  keyFile?: string;
}

/** As the browser entry's, plus `keyFile`. */
export function connectProtected(url: string, options: NodeProtectedClientOptions): Promise<ProtectedClient> {
  const { keyFile, ...rest } = options;
  if (keyFile !== undefined && rest.keyStore !== undefined) throw new TypeError('give keyFile or keyStore, not both');
  return connectWithStore(url, keyFile === undefined ? rest : { ...rest, keyStore: fileKeyStore(keyFile) });
}
