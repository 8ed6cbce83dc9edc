import { createPrivateKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import type * as X509 from '@peculiar/x509';

/** A certificate and its private key, both PEM. */
export interface CertificateAndKey {
  cert: string;
  key: string;
}

export interface IssueRequest {
  commonName: string;
  days: number;
  /** 'server' and 'client' get the matching extended key usage; 'ca' may sign certificates. */
  role: 'ca' | 'server' | 'client';
  /** Subject alternative names. */
  altNames?: Array<{ type: 'dns' | 'ip' | 'email' | 'url'; value: string }>;
}

type Library = typeof X509;
let library: Promise<Library> | undefined;

/** Loaded on first use only: a broker with configured certificates never needs it. */
function x509(): Promise<Library> {
  library ??= (async () => {
    // The library's dependency-injection container needs the Reflect metadata API installed first.
    await import('reflect-metadata');
    const lib = await import('@peculiar/x509');
    lib.cryptoProvider.set(webcrypto as unknown as Crypto);
    return lib;
  })();
  return library;
}

const P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;

/** Issues a certificate with a fresh ECDSA P-256 key: self-signed when `issuer` is omitted. */
export async function issueCertificate(request: IssueRequest, issuer?: CertificateAndKey): Promise<CertificateAndKey> {
  if (request.commonName.trim() === '') throw new TypeError('certificate common name must not be empty');
  if (!Number.isInteger(request.days) || request.days < 1) {
    throw new RangeError(`certificate validity must be a positive whole number of days, got ${request.days}`);
  }
  const lib = await x509();
  const keys = await webcrypto.subtle.generateKey(P256, true, ['sign', 'verify']);
  const subject = [{ CN: [request.commonName] }];
  const signer = issuer ? await importSigner(lib, issuer) : undefined;
  const issuerCert = signer?.cert;

  const { KeyUsageFlags: Usage } = lib;
  const extensions: X509.Extension[] = [
    new lib.BasicConstraintsExtension(request.role === 'ca', undefined, true),
    new lib.KeyUsagesExtension(
      request.role === 'ca' ? Usage.keyCertSign | Usage.cRLSign | Usage.digitalSignature : Usage.digitalSignature,
      true,
    ),
    await lib.SubjectKeyIdentifierExtension.create(keys.publicKey),
    await lib.AuthorityKeyIdentifierExtension.create(issuerCert ? issuerCert.publicKey : keys.publicKey),
  ];
  if (request.role !== 'ca') {
    const purpose = request.role === 'server' ? lib.ExtendedKeyUsage.serverAuth : lib.ExtendedKeyUsage.clientAuth;
    extensions.push(new lib.ExtendedKeyUsageExtension([purpose]));
  }
  if (request.altNames?.length) extensions.push(new lib.SubjectAlternativeNameExtension(request.altNames));

  // Back-dated a little so a peer whose clock lags slightly still accepts a brand-new certificate.
  const notBefore = new Date(Date.now() - 5 * 60_000);
  const notAfter = new Date(Date.now() + request.days * 86_400_000);
  const serialNumber = positiveSerial();
  const cert = signer
    ? await lib.X509CertificateGenerator.create({
        serialNumber, notBefore, notAfter, extensions,
        subject, issuer: signer.cert.subject, publicKey: keys.publicKey,
        signingKey: signer.key, signingAlgorithm: signer.algorithm,
      })
    : await lib.X509CertificateGenerator.createSelfSigned({
        serialNumber, notBefore, notAfter, extensions, name: subject, keys,
        signingAlgorithm: { ...P256, hash: 'SHA-256' } as EcdsaParams,
      });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' });
  return { cert: cert.toString('pem') + '\n', key: String(key) };
}

/** 128 random bits, top bit cleared so the DER integer stays positive (RFC 5280 §4.1.2.2). */
function positiveSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

interface Signer {
  cert: X509.X509Certificate;
  key: CryptoKey;
  algorithm: Algorithm | EcdsaParams;
}

async function importSigner(lib: Library, issuer: CertificateAndKey): Promise<Signer> {
  requirePem(issuer.cert, 'CA certificate');
  requirePem(issuer.key, 'CA private key');
  const cert = new lib.X509Certificate(issuer.cert);
  let keyObject: KeyObject;
  try {
    keyObject = createPrivateKey(issuer.key);
  } catch (err) {
    throw new Error(`CA private key cannot be read: ${(err as Error).message}`, { cause: err });
  }
  const { algorithm, importParams } = signingAlgorithm(keyObject);
  const pkcs8 = keyObject.export({ format: 'der', type: 'pkcs8' });
  const key = await webcrypto.subtle.importKey('pkcs8', pkcs8, importParams, false, ['sign']);
  const matches = await cert.publicKey.export(importParams, ['verify']).then(async (publicKey) => {
    const probe = Buffer.from('key pair check');
    return webcrypto.subtle.verify(algorithm, publicKey, await webcrypto.subtle.sign(algorithm, key, probe), probe);
  });
  if (!matches) throw new Error('CA private key does not belong to the CA certificate');
  return { cert, key, algorithm };
}

function signingAlgorithm(key: KeyObject): { algorithm: Algorithm | EcdsaParams; importParams: EcKeyImportParams | RsaHashedImportParams } {
  const curve = key.asymmetricKeyDetails?.namedCurve;
  if (key.asymmetricKeyType === 'ec' && (curve === 'prime256v1' || curve === 'secp384r1')) {
    const [namedCurve, hash] = curve === 'prime256v1' ? ['P-256', 'SHA-256'] : ['P-384', 'SHA-384'];
    return { algorithm: { name: 'ECDSA', hash } as EcdsaParams, importParams: { name: 'ECDSA', namedCurve } };
  }
  if (key.asymmetricKeyType === 'rsa') {
    return { algorithm: { name: 'RSASSA-PKCS1-v1_5' }, importParams: { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } };
  }
  throw new Error(`CA key type ${key.asymmetricKeyType}${curve ? ` (${curve})` : ''} is not supported: use EC P-256, EC P-384 or RSA`);
}

function requirePem(text: string, what: string): void {
  if (!/-----BEGIN [A-Z0-9 ]+-----/.test(text)) {
    throw new TypeError(`${what} must be PEM text (the file's contents, not its path)`);
  }
}
