import { X509Certificate, createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CtOpsError } from '../../common/errors.ts';
import { parseCertificates, trustBundleDigest, verifyTrustBundle, type TrustBundle } from '../../common/trust-bundle.ts';
import type { AgentLogger } from '../log/logger.ts';
import { writeFileAtomic } from '../../common/atomic-write.ts';

/** The trust bundle the agent holds, in its data directory (mode 0644: certificates only). */
export const TRUST_FILE = 'trusted_cas.json';

/** The shape of trusted_cas.json. */
interface TrustFile {
  generation: number;
  ca_pems: string[];
  /** SHA-256 (hex) of the ca_cert_file text the bundle was accepted under (see AgentTrust.load). */
  ca_cert_file_sha256: string;
}

/**
 * The CAs the agent trusts for the appliance's TLS. Before any trust bundle it is the configured
 * ca_cert_file (the bootstrap trust; undefined: the system roots). Once the appliance sent a bundle
 * signed by a CA the agent trusts (HeartbeatResponse.trust), the bundle's CAs REPLACE it — so a CA
 * the appliance retired is no longer trusted, which is the point of retiring it — until an admin
 * changes ca_cert_file: that newer word wins again (the recovery of an agent that missed a rotation).
 */
export class AgentTrust {
  readonly #path: string;
  readonly #bootstrapPem: string | undefined;
  #generation: number;
  #caPem: string | undefined;
  #digest: Buffer;

  private constructor(path: string, bootstrapPem: string | undefined, generation: number, caPem: string | undefined) {
    this.#path = path;
    this.#bootstrapPem = bootstrapPem;
    this.#generation = generation;
    this.#caPem = caPem;
    this.#digest = AgentTrust.#digestOf(generation, caPem);
  }

  static #digestOf(generation: number, caPem: string | undefined): Buffer {
    return generation === 0 || caPem === undefined ? Buffer.alloc(0) : trustBundleDigest(generation, parseCertificates(caPem));
  }

  /** Reads trusted_cas.json from `dataDir`; an unreadable or damaged file is logged and the bootstrap trust used. */
  static load(dataDir: string, bootstrapPem: string | undefined, log: AgentLogger): AgentTrust {
    const path = join(dataDir, TRUST_FILE);
    const bootstrap = new AgentTrust(path, bootstrapPem, 0, bootstrapPem);
    if (!existsSync(path)) return bootstrap;
    let file: TrustFile;
    try {
      file = JSON.parse(readFileSync(path, 'utf8')) as TrustFile;
      if (!Number.isSafeInteger(file.generation) || !Array.isArray(file.ca_pems) || parseCertificates(file.ca_pems.join('\n')).length === 0) throw new Error('not a trust bundle');
    } catch (error) {
      log.warn({ path, error: (error as Error).message }, 'the stored trust bundle is unreadable; trusting ca_cert_file until the appliance sends a new one');
      return bootstrap;
    }
    if (file.ca_cert_file_sha256 !== textSha256(bootstrapPem)) {
      log.info({ path, generation: file.generation }, 'ca_cert_file changed since the trust bundle was stored; trusting ca_cert_file');
      return bootstrap;
    }
    return new AgentTrust(path, bootstrapPem, file.generation, joinPems(file.ca_pems));
  }

  /** The generation of the bundle trusted (HeartbeatRequest.trust_generation); 0 for the bootstrap trust. */
  get generation(): number {
    return this.#generation;
  }

  /** SHA-256 of the held bundle's signed payload (HeartbeatRequest.trust_digest); empty for the bootstrap trust. */
  get digest(): Buffer {
    return this.#digest;
  }

  /** The PEM CAs to trust now; undefined: the system roots. */
  get caPem(): string | undefined {
    return this.#caPem;
  }

  /**
   * Verifies `bundle` against the CAs trusted now (common/trust-bundle.ts verifyTrustBundle), stores it
   * atomically, and trusts exactly its CAs from now on. Throws ERR_TRUST_BUNDLE_INVALID (nothing
   * stored, the trust unchanged) or ERR_DATA_DIR_UNUSABLE (not stored: the trust is unchanged too,
   * so what the agent reports stays true, and the appliance sends the bundle again on the next stream).
   * The bundle held already (same generation and certificates) is a no-op; the same generation with
   * other certificates is refused by name: the appliance's rotation state was restored or replaced.
   * `now`: this host's clock, which a generation may lead by at most MAX_GENERATION_AHEAD_MS.
   */
  accept(bundle: TrustBundle, now: Date): void {
    const trusted = this.#caPem === undefined ? [] : parseCertificates(this.#caPem);
    if (trusted.length === 0) throw new CtOpsError('ERR_TRUST_BUNDLE_INVALID', 'trust bundle refused: this agent trusts the system roots (ca_cert_file is empty), none of which signs trust bundles', { generation: bundle.generation });
    if (bundle.generation === this.#generation && this.#generation > 0) {
      if (sameCertificates(bundle.caPems, trusted)) return;
      throw new CtOpsError('ERR_TRUST_BUNDLE_INVALID', `trust bundle ${bundle.generation} refused: it has the generation held but other certificates; the appliance's rotation state was restored or replaced (an admin starts a new rotation, or sets ca_cert_file on this host)`, { generation: bundle.generation });
    }
    // Re-encoded from the verified DER: what is stored and trusted is exactly what the signature covers.
    const caPems = verifyTrustBundle(bundle, trusted, this.#generation, now).map((certificate) => certificate.toString());
    const file: TrustFile = { generation: bundle.generation, ca_pems: caPems, ca_cert_file_sha256: textSha256(this.#bootstrapPem) };
    writeFileAtomic(this.#path, `${JSON.stringify(file, null, 2)}\n`, 0o644);
    this.#generation = bundle.generation;
    this.#caPem = joinPems(caPems);
    this.#digest = AgentTrust.#digestOf(bundle.generation, this.#caPem);
  }
}

/** True when the entries are, in order, exactly these certificates (DER); false when any does not parse. */
function sameCertificates(caPems: readonly string[], certificates: readonly X509Certificate[]): boolean {
  try {
    return caPems.length === certificates.length && caPems.every((pem, index) => new X509Certificate(pem).raw.equals(certificates[index]!.raw));
  } catch {
    return false;
  }
}

function textSha256(text: string | undefined): string {
  return createHash('sha256').update(text ?? '').digest('hex');
}

function joinPems(pems: readonly string[]): string {
  return pems.map((pem) => `${pem.trim()}\n`).join('');
}
