import { X509Certificate, createHash, verify } from 'node:crypto';
import { CtOpsError } from './errors.ts';

/**
 * A trust bundle: the CA certificates an agent trusts for the appliance's TLS, sent on its
 * authenticated Heartbeat stream during a CA rotation (proto TrustBundle; decisions.md 71).
 */
export interface TrustBundle {
  /**
   * Increases with each bundle the appliance issues: its issue time in ms since the Unix epoch, or one
   * more than the previous when the clock has not moved past it (decisions.md 77). A safe integer ≥ 1.
   */
  readonly generation: number;
  /** PEM CA certificates, the appliance's current CA first. */
  readonly caPems: readonly string[];
  /** ECDSA P-256 / SHA-256, DER encoded, by the current CA's key over trustBundlePayload. */
  readonly signature: Uint8Array;
}

/** A bundle names the current CA and at most the next one; a few more leave room, nothing more is plausible. */
export const MAX_TRUST_BUNDLE_CAS = 4;
const PAYLOAD_CONTEXT = 'ct-ops trust bundle v1\n';
/**
 * How far a bundle's generation (an issue time in ms) may lie ahead of the agent's clock. A key that
 * signed bundles once (a retired or stolen CA key) can pin an agent's generation at most this far
 * ahead, not at 2^53−1 for ever; a larger clock difference refuses bundles until the clocks are set.
 */
export const MAX_GENERATION_AHEAD_MS = 86_400_000;

/**
 * The bytes the signature covers: a context string, the generation as 8 bytes big-endian, then per
 * certificate its DER length (4 bytes big-endian) and DER. DER, not PEM, so line endings or headers
 * a transport may touch cannot change what was signed; the context keeps the signature from being
 * read as any other the CA key makes.
 */
export function trustBundlePayload(generation: number, certificates: readonly X509Certificate[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeBigUInt64BE(BigInt(generation));
  const parts: Buffer[] = [Buffer.from(PAYLOAD_CONTEXT, 'utf8'), head];
  for (const certificate of certificates) {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(certificate.raw.length);
    parts.push(length, certificate.raw);
  }
  return Buffer.concat(parts);
}

/** SHA-256 of trustBundlePayload: what an agent reports holding (HeartbeatRequest.trust_digest), compared for equality. */
export function trustBundleDigest(generation: number, certificates: readonly X509Certificate[]): Buffer {
  return createHash('sha256').update(trustBundlePayload(generation, certificates)).digest();
}

/**
 * Checks a bundle before anything of it is trusted: 1 to MAX_TRUST_BUNDLE_CAS entries, each exactly
 * one PEM CA certificate; a generation newer than `heldGeneration` and at most MAX_GENERATION_AHEAD_MS
 * ahead of `now`; and a signature that verifies
 * with the public key of one of `trusted` (the CAs the agent trusts now). Returns the parsed
 * certificates — the signed content; trust those (re-encoded), never the entries' text. Throws ERR_TRUST_BUNDLE_INVALID naming what failed.
 */
export function verifyTrustBundle(bundle: TrustBundle, trusted: readonly X509Certificate[], heldGeneration: number, now: Date): X509Certificate[] {
  const invalid = (reason: string): CtOpsError => new CtOpsError('ERR_TRUST_BUNDLE_INVALID', `trust bundle ${bundle.generation} refused: ${reason}`, { generation: bundle.generation });
  if (!Number.isSafeInteger(bundle.generation) || bundle.generation < 1) throw invalid('its generation is not a positive integer');
  if (bundle.generation <= heldGeneration) throw invalid(`it is not newer than the bundle held (generation ${heldGeneration})`);
  if (bundle.generation > now.getTime() + MAX_GENERATION_AHEAD_MS) {
    throw invalid(`its generation (issued ${new Date(bundle.generation).toISOString()}) lies more than a day ahead of this host's clock (${now.toISOString()}); set the clocks right`);
  }
  if (bundle.caPems.length < 1 || bundle.caPems.length > MAX_TRUST_BUNDLE_CAS) throw invalid(`it must hold 1 to ${MAX_TRUST_BUNDLE_CAS} certificates, not ${bundle.caPems.length}`);
  const certificates = bundle.caPems.map((pem, index) => {
    // Exactly one block and nothing else: X509Certificate reads only the first block of a text, so a
    // second one appended would travel unsigned into whatever later reads the whole text.
    const blocks = parseCertificateBlocks(pem);
    if (blocks.length !== 1 || pem.replace(blocks[0]!, '').trim() !== '') throw invalid(`entry ${index + 1} must be exactly one PEM certificate and nothing else`);
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(blocks[0]!);
    } catch {
      throw invalid(`certificate ${index + 1} is not a PEM certificate`);
    }
    if (!certificate.ca) throw invalid(`certificate ${index + 1} (${certificate.subject}) is not a CA certificate`);
    return certificate;
  });
  const payload = trustBundlePayload(bundle.generation, certificates);
  const signer = trusted.find((ca) => {
    try {
      return verify('sha256', payload, ca.publicKey, bundle.signature);
    } catch {
      return false;
    }
  });
  if (signer === undefined) throw invalid('its signature does not verify with any CA this agent trusts');
  return certificates;
}

/** The certificates of a PEM text holding one or more (a CA file may hold several). */
export function parseCertificates(pemText: string): X509Certificate[] {
  return parseCertificateBlocks(pemText).map((block) => new X509Certificate(block));
}

/** The `-----BEGIN CERTIFICATE-----` … `-----END CERTIFICATE-----` blocks of a text, in order. */
function parseCertificateBlocks(pemText: string): string[] {
  return pemText.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}
