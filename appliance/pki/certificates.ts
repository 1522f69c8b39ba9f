// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import { X509Certificate as NodeX509Certificate, createHash, createPrivateKey, webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import { CtOpsError } from '../../common/errors.ts';
import { CA_CERT_FILE, CA_NEXT_CERT_FILE } from '../lib/data-dir-files.ts';
import { readCaRotation } from './rotation-file.ts';
import { PUBLIC_FILE_MODE, SECRET_FILE_MODE, readIfExists, writeFileAtomic } from './files.ts';

// Node's WebCrypto implements the DOM Crypto interface the library is typed against.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.create>[1] & object);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_LIFETIME_DAYS = 3650;
const SERVER_LIFETIME_DAYS = 397;
/** A server certificate this close to expiry is reissued at start-up. */
const SERVER_RENEW_BEFORE_DAYS = 30;
/**
 * Certificates are valid from this long before they are issued: an agent checks the chain by its
 * own clock (TLS gives it no other), so a host clock up to this far behind still connects.
 */
const NOT_BEFORE_BACKDATE_DAYS = 7;

export interface TlsMaterial {
  caCertPem: string;
  serverCertPem: string;
  serverKeyPem: string;
  /** SHA-256 of the CA certificate's DER, colon-separated hex, for humans to compare. */
  caFingerprint: string;
  /** True when this start created the CA (first start). */
  createdCa: boolean;
  /** True when this start (re)issued the server certificate. */
  issuedServerCert: boolean;
}

export const CA_KEY_FILE = 'ca.key';
/** The next CA of a rotation in progress (appliance/pki/ca-rotation.ts); its certificate is CA_NEXT_CERT_FILE. */
export const CA_NEXT_KEY_FILE = 'ca-next.key';
export const SERVER_CERT_FILE = 'server.crt';
export const SERVER_KEY_FILE = 'server.key';

/** A CA's certificate and private key as read from the data directory. */
export interface CaPair {
  certPem: string;
  keyPem: string;
}

/**
 * Loads the appliance CA and server certificate from the data directory, creating
 * the CA on first start and (re)issuing the server certificate when it or its key is missing, is not its key's,
 * near expiry, names other SANs than configured, was not issued by the CA that is to issue it
 * (the next CA once a rotation switched, ca-rotation.json), or `reissue` asks for a new one
 * (`certs rotate-server`).
 */
export async function ensureTlsMaterial(dataDir: string, sans: readonly string[], now: Date, options: { reissue?: boolean } = {}): Promise<TlsMaterial> {
  const caCertPath = join(dataDir, CA_CERT_FILE);
  const caKeyPath = join(dataDir, CA_KEY_FILE);
  let caCertPem = readIfExists(caCertPath);
  let caKeyPem = readIfExists(caKeyPath);
  const createdCa = caCertPem === undefined || caKeyPem === undefined;
  if (createdCa) {
    const ca = await createCa(now);
    caCertPem = ca.certPem;
    caKeyPem = ca.keyPem;
    writeFileAtomic(caKeyPath, caKeyPem, SECRET_FILE_MODE);
    writeFileAtomic(caCertPath, caCertPem, PUBLIC_FILE_MODE);
  }
  const issuer = readCaRotation(dataDir).phase === 'update-servers' ? readCaPair(dataDir, CA_NEXT_CERT_FILE, CA_NEXT_KEY_FILE) : { certPem: caCertPem as string, keyPem: caKeyPem as string };

  const serverCertPath = join(dataDir, SERVER_CERT_FILE);
  const serverKeyPath = join(dataDir, SERVER_KEY_FILE);
  let serverCertPem = readIfExists(serverCertPath);
  let serverKeyPem = readIfExists(serverKeyPath);
  const issuedServerCert = createdCa || options.reissue === true || !serverCertPem || !serverKeyPem || !serverCertFits(serverCertPem, serverKeyPem, issuer.certPem, sans, now);
  if (issuedServerCert) {
    const issuerKeyPath = issuer.certPem === caCertPem ? caKeyPath : join(dataDir, CA_NEXT_KEY_FILE);
    const server = await issueServerCert(new x509.X509Certificate(issuer.certPem), await importEcPrivateKey(issuer.keyPem, issuerKeyPath), sans, now);
    serverCertPem = server.certPem;
    serverKeyPem = server.keyPem;
    writeFileAtomic(serverKeyPath, serverKeyPem, SECRET_FILE_MODE);
    writeFileAtomic(serverCertPath, serverCertPem, PUBLIC_FILE_MODE);
  }
  return {
    caCertPem: caCertPem as string,
    serverCertPem: serverCertPem as string,
    serverKeyPem: serverKeyPem as string,
    caFingerprint: certificateFingerprint(caCertPem as string),
    createdCa,
    issuedServerCert,
  };
}

/** Reads a CA's certificate and key; throws ERR_DATA_DIR_UNUSABLE when either is missing. */
export function readCaPair(dataDir: string, certFile: string, keyFile: string): CaPair {
  const certPem = readIfExists(join(dataDir, certFile));
  const keyPem = readIfExists(join(dataDir, keyFile));
  if (certPem === undefined || keyPem === undefined) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${join(dataDir, certFile)} or ${join(dataDir, keyFile)} is missing`, { path: join(dataDir, certFile) });
  }
  return { certPem, keyPem };
}

/** True when `keyPem` is the private key of the certificate `certPem`; false also when either does not parse. */
export function keyMatchesCertificate(certPem: string, keyPem: string): boolean {
  try {
    return new NodeX509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}

/** SHA-256 of the certificate's DER, upper-case hex in colon-separated pairs. */
export function certificateFingerprint(pem: string): string {
  const der = new NodeX509Certificate(pem).raw;
  return createHash('sha256').update(der).digest('hex').toUpperCase().match(/../g)!.join(':');
}

/**
 * A new self-signed ECDSA P-256 CA (PEM certificate and PKCS#8 key): valid from NOT_BEFORE_BACKDATE_DAYS
 * before `now` for CA_LIFETIME_DAYS, may sign leaves only (path length 0), named by `now` to the second.
 */
export async function createCa(now: Date): Promise<CaPair> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    // To the second: a rotation's next CA, made the same day, must not share the current one's name (chain building matches names).
    name: `CN=CT-Ops Appliance CA ${now.toISOString().slice(0, 19)}Z`,
    notBefore: new Date(now.getTime() - NOT_BEFORE_BACKDATE_DAYS * DAY_MS),
    notAfter: new Date(now.getTime() + CA_LIFETIME_DAYS * DAY_MS),
    signingAlgorithm: SIGNING,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

async function issueServerCert(caCert: x509.X509Certificate, caKey: CryptoKey, sans: readonly string[], now: Date): Promise<{ certPem: string; keyPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify'])) as CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `CN=${sans[0] ?? 'ct-ops-appliance'}`,
    issuer: caCert.subject,
    notBefore: new Date(now.getTime() - NOT_BEFORE_BACKDATE_DAYS * DAY_MS),
    notAfter: new Date(now.getTime() + SERVER_LIFETIME_DAYS * DAY_MS),
    signingAlgorithm: SIGNING,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(sans.map((name) => (isIP(name) ? { type: 'ip' as const, value: name } : { type: 'dns' as const, value: name }))),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

/**
 * True when the certificate is the key's (a stop between the two writes of an issue leaves them
 * apart, which no listener can serve), was issued by this CA, is not near expiry and names exactly these SANs.
 */
function serverCertFits(certPem: string, keyPem: string, caCertPem: string, sans: readonly string[], now: Date): boolean {
  if (!keyMatchesCertificate(certPem, keyPem)) return false;
  const cert = new NodeX509Certificate(certPem);
  if (!cert.checkIssued(new NodeX509Certificate(caCertPem))) return false;
  if (new Date(cert.validTo).getTime() - now.getTime() < SERVER_RENEW_BEFORE_DAYS * DAY_MS) return false;
  const present = (cert.subjectAltName ?? '').split(', ').map((entry) => entry.replace(/^(DNS|IP Address):/, '')).sort();
  const wanted = sans.map((name) => (isIP(name) === 6 ? expandIpv6(name) : name)).sort();
  return present.length === wanted.length && present.every((name, index) => name.toUpperCase() === wanted[index]!.toUpperCase());
}

/** Node prints IPv6 SANs fully expanded without leading zeros (e.g. 0:0:0:0:0:0:0:1). */
function expandIpv6(address: string): string {
  const [head = '', tail = ''] = address.split('::');
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const missing = address.includes('::') ? 8 - headParts.length - tailParts.length : 0;
  return [...headParts, ...Array<string>(missing).fill('0'), ...tailParts].map((part) => part.replace(/^0+(?=.)/, '').toUpperCase()).join(':');
}

async function importEcPrivateKey(pem: string, path: string): Promise<CryptoKey> {
  try {
    const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    return await webcrypto.subtle.importKey('pkcs8', der, EC_P256, false, ['sign']);
  } catch (cause) {
    throw new CtOpsError('ERR_DATA_DIR_UNUSABLE', `${path} is not a PKCS#8 P-256 private key`, { path }, { cause });
  }
}

async function exportPrivateKeyPem(key: CryptoKey): Promise<string> {
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }).export({ format: 'pem', type: 'pkcs8' }).toString();
}

function randomSerial(): string {
  // A positive 128-bit serial: the top bit cleared so DER needs no sign byte.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}
