import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { issueCertificate, type CertificateAndKey, type IssueRequest } from './x509.js';

export type { CertificateAndKey } from './x509.js';

export interface DevCertificates {
  caCert: string;
  caKey: string;
  serverCert: string;
  serverKey: string;
  /** True when this call wrote new files (the caller logs it). */
  created: boolean;
}

const FILES = { caCert: 'ca.crt', caKey: 'ca.key', serverCert: 'server.crt', serverKey: 'server.key' } as const;
const CA_DAYS = 3650;
// 825 days: the longest validity that strict TLS clients (e.g. Apple's) accept for a server certificate.
const SERVER_DAYS = 825;
const DAY_MS = 86_400_000;

/**
 * First start with no certificates configured: create (once) a self-signed development CA and a
 * server certificate for localhost/127.0.0.1/::1 under DATA/certs/, reuse them afterwards, and
 * return the paths and whether they were created (the caller logs it). A server certificate that
 * has expired or expires within a day is reissued from the same CA, so clients keep trusting it.
 */
export async function ensureDevCertificates(dataDir: string): Promise<DevCertificates> {
  const dir = join(dataDir, 'certs');
  const paths = {
    caCert: join(dir, FILES.caCert),
    caKey: join(dir, FILES.caKey),
    serverCert: join(dir, FILES.serverCert),
    serverKey: join(dir, FILES.serverKey),
  };
  const existing = await listNames(dir);
  const missing = Object.values(FILES).filter((name) => !existing.includes(name));
  if (missing.length === 0) {
    const renewed = await renewServerIfExpiring(paths);
    return { ...paths, created: renewed };
  }
  if (missing.length < Object.keys(FILES).length) {
    throw new Error(
      `development certificates in ${dir} are incomplete (missing ${missing.join(', ')}): ` +
        'restore them, or remove that folder to create new ones (clients must then trust the new CA)',
    );
  }
  if (existing.length > 0) {
    throw new Error(`${dir} holds other files but no development certificates: move them away or configure certificates`);
  }
  const created = await createAll(dataDir, dir);
  return { ...paths, created };
}

/** Issue a client certificate signed by the given CA (PEM texts): tests, and a future `mqt-tz cert` command. */
export function issueClientCertificate(
  ca: CertificateAndKey,
  commonName: string,
  opts: { days?: number; sanEmail?: string; sanDns?: string; sanUri?: string } = {},
): Promise<CertificateAndKey> {
  const altNames: NonNullable<IssueRequest['altNames']> = [];
  if (opts.sanDns !== undefined) altNames.push({ type: 'dns', value: opts.sanDns });
  if (opts.sanEmail !== undefined) altNames.push({ type: 'email', value: opts.sanEmail });
  if (opts.sanUri !== undefined) altNames.push({ type: 'url', value: opts.sanUri });
  return issueCertificate({ commonName, days: opts.days ?? 365, role: 'client', altNames }, ca);
}

function issueServerCertificate(ca: CertificateAndKey): Promise<CertificateAndKey> {
  return issueCertificate(
    {
      commonName: 'localhost',
      days: SERVER_DAYS,
      role: 'server',
      altNames: [
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ],
    },
    ca,
  );
}

/**
 * Everything is written into a fresh private folder that is then renamed into place: a crash
 * leaves no half-made set, and of two processes starting at once only one set wins.
 */
async function createAll(dataDir: string, dir: string): Promise<boolean> {
  const ca = await issueCertificate({ commonName: 'mqt-tz development CA', days: CA_DAYS, role: 'ca' });
  const server = await issueServerCertificate(ca);
  await mkdir(dataDir, { recursive: true });
  const staging = await mkdtemp(join(dataDir, '.certs-'));
  try {
    await writePair(staging, FILES.caCert, FILES.caKey, ca);
    await writePair(staging, FILES.serverCert, FILES.serverKey, server);
    await rename(staging, dir);
    return true;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    const code = (err as NodeJS.ErrnoException).code;
    // rename() replaces an empty folder; a full one means another process made the set first.
    if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await listNames(dir)).length === Object.keys(FILES).length) {
      return false;
    }
    throw err;
  }
}

async function renewServerIfExpiring(paths: Record<keyof typeof FILES, string>): Promise<boolean> {
  const server = new X509Certificate(await readFile(paths.serverCert));
  if (Date.parse(server.validTo) - Date.now() > DAY_MS) return false;
  const ca = { cert: await readFile(paths.caCert, 'utf8'), key: await readFile(paths.caKey, 'utf8') };
  if (Date.parse(new X509Certificate(ca.cert).validTo) - Date.now() <= DAY_MS) {
    throw new Error(`the development CA in ${paths.caCert} has expired: remove its folder to create a new one`);
  }
  const renewed = await issueServerCertificate(ca);
  // Staged then renamed, so the live pair is never half-replaced.
  await writeFile(`${paths.serverKey}.new`, renewed.key, { mode: 0o600 });
  await writeFile(`${paths.serverCert}.new`, renewed.cert, { mode: 0o644 });
  await rename(`${paths.serverKey}.new`, paths.serverKey);
  await rename(`${paths.serverCert}.new`, paths.serverCert);
  return true;
}

/** Private keys are readable by their owner only. */
async function writePair(dir: string, certName: string, keyName: string, pair: CertificateAndKey): Promise<void> {
  await writeFile(join(dir, keyName), pair.key, { mode: 0o600, flag: 'wx' });
  await writeFile(join(dir, certName), pair.cert, { mode: 0o644, flag: 'wx' });
}

async function listNames(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}
