import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CtOpsError } from '../../common/errors.ts';
import type { TrustBundle as TrustBundleMessage } from '../../common/proto.ts';
import { trustBundleDigest, type TrustBundle } from '../../common/trust-bundle.ts';
import type { ClusterService } from '../cluster/service.ts';
import { CA_CERT_FILE, CA_NEXT_CERT_FILE } from '../lib/data-dir-files.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Stores } from '../store/index.ts';
import { enterPhase, nextPhase, type CaRotationStep } from './ca-rotation.ts';
import { certificateFingerprint, ensureTlsMaterial, type TlsMaterial } from './certificates.ts';
import { readIfExists } from './files.ts';
import { readCaRotation, type CaRotationPhase, type CaRotationRecord } from './rotation-file.ts';

/** A listener whose certificate can be replaced while it runs (gRPC and HTTPS servers). */
export interface ServesCertificate {
  useCertificate(certPem: string, keyPem: string): void;
}

/** What `certs status` shows (GET /api/v1/certs). */
export interface CertsStatus {
  phase: CaRotationPhase;
  /** The generation of the trust bundle agents are to hold (its issue time in ms); 0 before the first rotation. */
  generation: number;
  ca_fingerprint: string;
  next_ca_fingerprint: string | null;
  server_certificate: { fingerprint: string; issuer: string; sans: string[]; not_after: string };
  /** Active hosts by whether they hold the current bundle and stream now. */
  hosts: { active: number; online_with_bundle: number; online_without: number; offline_with_bundle: number; offline_without: number };
  /** Active hosts without the current bundle (at most 100), so an admin knows whom a switch would cut off. */
  without_bundle: Array<{ host_id: string; hostname: string; online: boolean; trust_generation: number }>;
  /** Hosts waiting for approval (at most 100): they get no bundle until approved, so a switch may cut them off too. */
  pending: Array<{ host_id: string; hostname: string }>;
}

/** What the service works with: the data directory's files, the hosts' reported bundles, the open streams. */
export interface CertificateServiceDeps {
  /** Holds ca.crt/.key, ca-next.*, server.*, ca-rotation.json. */
  dataDir: string;
  /** The SANs the server certificate is to name: the appliance's configuration read again. */
  sans: () => readonly string[];
  /** hostTrust: the bundle each active host reported holding. */
  stores: Stores;
  /** Which hosts stream to this instance now, to push a new bundle to. */
  presence: PresenceRegistry;
  /** The instances on the database: a rotation runs only on the one alive; online is read across them (in the database server's clock). */
  cluster: Pick<ClusterService, 'alone' | 'now'>;
  log: Logger;
}

/** What a Heartbeat stream asks of the service: report what the agent holds, send it what it lacks. */
export interface TrustWatch {
  /**
   * The agent's HeartbeatRequest.trust_generation and .trust_digest: recorded when they change; the
   * bundle sent once per stream when the digest is not the current bundle's.
   */
  heard(generation: number, digest: Uint8Array): Promise<void>;
}

/**
 * Owns the appliance's certificates while it runs: the served leaf (re-issued by `certs
 * rotate-server` and `rotate-ca switch`, then swapped into the running listeners: agents trust the
 * CA, not the leaf), and the CA rotation (pki/ca-rotation.ts), whose trust bundle goes to every
 * streaming agent when it changes and to every agent that reports an older one. Admin steps run
 * one at a time.
 */
export class CertificateService {
  readonly #deps: CertificateServiceDeps;
  #tls: TlsMaterial;
  #record: CaRotationRecord;
  /** Hex trustBundleDigest of #record.bundle; '' when there is none, as agents without one report. */
  #digest: string;
  #servers: readonly ServesCertificate[] = [];
  #queue: Promise<unknown> = Promise.resolve();

  constructor(deps: CertificateServiceDeps, tls: TlsMaterial) {
    this.#deps = deps;
    this.#tls = tls;
    this.#record = readCaRotation(deps.dataDir);
    this.#digest = bundleDigest(this.#record.bundle);
  }

  /** The listeners a new leaf is swapped into. */
  serveWith(servers: readonly ServesCertificate[]): void {
    this.#servers = servers;
  }

  /**
   * The trust side of one Heartbeat stream of `hostId`: `send` writes a message on that stream
   * (true once the stream accepted it, false: not sent). Equality of digests, not an order of generations, decides whether the agent holds the
   * bundle: after a restored data directory an agent may hold a newer or a same-numbered other bundle.
   */
  watchTrust(hostId: string, send: (message: { trust: TrustBundleMessage }) => Promise<boolean>): TrustWatch {
    let recorded: string | undefined;
    let sentDigest = '';
    return {
      heard: async (generation, digestBytes) => {
        const digest = Buffer.from(digestBytes).toString('hex');
        if (`${generation}/${digest}` !== recorded) {
          await this.#deps.stores.hostTrust.record(hostId, generation, digest);
          recorded = `${generation}/${digest}`;
        }
        const bundle = this.#record.bundle;
        if (bundle === undefined || digest === this.#digest || sentDigest === this.#digest) return;
        // Taken while the write waits, so the next heartbeat does not send it again; given back if not sent.
        const sending = this.#digest;
        sentDigest = sending;
        void send({ trust: toWire(bundle) }).then((sent) => {
          if (!sent && sentDigest === sending) sentDigest = '';
        });
      },
    };
  }

  /** Issues a new server certificate for the configured SANs now (before expiry, or new names) and serves it; `adminName` is logged. */
  rotateServer(now: Date, adminName: string): Promise<CertsStatus> {
    return this.#serially(async () => {
      await this.#issueAndServe(now, adminName);
      return this.status();
    });
  }

  /** One step of the CA rotation (pki/ca-rotation.ts nextPhase) asked by `adminName` (logged); throws its refusal. */
  rotateCa(step: CaRotationStep, force: boolean, now: Date, adminName: string): Promise<CertsStatus> {
    return this.#serially(async () => {
      // The rotation's state lives in this instance's data directory: the others would keep serving the old CA.
      if (!(await this.#deps.cluster.alone())) {
        throw new CtOpsError('ERR_CA_ROTATION_INSTANCES', 'other ingest instances serve from this database; stop them, rotate the CA on this instance, then provision them again from it (docs/operations.md, Adding an ingest instance)', { step });
      }
      const named = (host: { hostId: string; hostname: string }): string => `${host.hostname} (${host.hostId})`;
      const unacknowledged = step === 'switch' ? (await this.#withoutBundle()).map(named) : [];
      const pending = step === 'switch' ? (await this.#deps.stores.hostTrust.pendingHosts()).map(named) : [];
      const next = nextPhase(this.#record.phase, step, { unacknowledged, pending, force });
      if (typeof next !== 'string') throw next;
      if (step === 'switch' && unacknowledged.length > 0) this.#deps.log.warn({ hosts: unacknowledged.slice(0, 100), count: unacknowledged.length, by: adminName }, 'CA rotation switched with --force: these hosts lack the next CA and will fail TLS at their next connection');
      const previous = this.#record;
      this.#record = await enterPhase(this.#deps.dataDir, previous, next, now);
      this.#digest = bundleDigest(this.#record.bundle);
      this.#deps.log.info({ step, phase: next, generation: this.#record.bundle?.generation ?? 0, by: adminName }, 'CA rotation step');
      // The switch serves a leaf of the next CA; after the finish that CA is ca.crt and the leaf stays.
      if (next === 'update-servers') await this.#issueAndServe(now, adminName);
      else {
        const caCertPem = readIfExists(join(this.#deps.dataDir, CA_CERT_FILE)) ?? this.#tls.caCertPem;
        this.#tls = { ...this.#tls, caCertPem, caFingerprint: certificateFingerprint(caCertPem) };
      }
      if (this.#record.bundle !== previous.bundle) this.#pushBundle(this.#record.bundle);
      return this.status();
    });
  }

  /** The rotation phase, the CAs, the served leaf and which active hosts hold the current bundle (CertsStatus). */
  async status(): Promise<CertsStatus> {
    const generation = this.#record.bundle?.generation ?? 0;
    const counts = { active: 0, online_with_bundle: 0, online_without: 0, offline_with_bundle: 0, offline_without: 0 };
    const without: CertsStatus['without_bundle'] = [];
    const active = await this.#deps.stores.hostTrust.activeHosts();
    // Online on any instance: a host streaming to another instance has its bundle pushed there.
    const streaming = await this.#deps.stores.instances.streamingAmong(active.map((host) => host.hostId), this.#deps.cluster.now());
    for (const host of active) {
      const online = streaming.has(host.hostId);
      const held = host.trustDigest === this.#digest;
      counts.active += 1;
      if (online) counts[held ? 'online_with_bundle' : 'online_without'] += 1;
      else counts[held ? 'offline_with_bundle' : 'offline_without'] += 1;
      if (!held && without.length < 100) without.push({ host_id: host.hostId, hostname: host.hostname, online, trust_generation: host.trustGeneration });
    }
    const nextCa = readIfExists(join(this.#deps.dataDir, CA_NEXT_CERT_FILE));
    const leaf = new X509Certificate(this.#tls.serverCertPem);
    return {
      phase: this.#record.phase,
      generation,
      ca_fingerprint: certificateFingerprint(this.#tls.caCertPem),
      next_ca_fingerprint: nextCa === undefined ? null : certificateFingerprint(nextCa),
      server_certificate: {
        fingerprint: certificateFingerprint(this.#tls.serverCertPem),
        issuer: leaf.issuer,
        sans: (leaf.subjectAltName ?? '').split(', ').filter(Boolean),
        not_after: new Date(leaf.validTo).toISOString(),
      },
      hosts: counts,
      without_bundle: without,
      pending: (await this.#deps.stores.hostTrust.pendingHosts()).slice(0, 100).map((host) => ({ host_id: host.hostId, hostname: host.hostname })),
    };
  }

  /** When the server certificate served now expires, ms since the epoch (the console's overview warns ahead). */
  serverCertificateNotAfter(): number {
    return Date.parse(new X509Certificate(this.#tls.serverCertPem).validTo);
  }

  /** Active hosts that do not hold the current bundle (all of them, when a rotation started). */
  async #withoutBundle(): Promise<Array<{ hostId: string; hostname: string }>> {
    return (await this.#deps.stores.hostTrust.activeHosts()).filter((host) => host.trustDigest !== this.#digest);
  }

  async #issueAndServe(now: Date, adminName: string): Promise<void> {
    const tls = await ensureTlsMaterial(this.#deps.dataDir, this.#deps.sans(), now, { reissue: true });
    this.#tls = tls;
    for (const server of this.#servers) server.useCertificate(tls.serverCertPem, tls.serverKeyPem);
    this.#deps.log.info({ fingerprint: certificateFingerprint(tls.serverCertPem), sans: this.#deps.sans(), next_ca: existsSync(join(this.#deps.dataDir, CA_NEXT_CERT_FILE)), by: adminName }, 'server certificate issued and served');
  }

  /** Sends the new bundle to every streaming agent now; one that misses it gets it with its next heartbeat (watchTrust). */
  #pushBundle(bundle: TrustBundle | undefined): void {
    if (bundle === undefined) return;
    const message = { trust: toWire(bundle) };
    void Promise.all(this.#deps.presence.streamingIds().map((hostId) => this.#deps.presence.send(hostId, message))).then((accepted) => {
      this.#deps.log.info({ generation: bundle.generation, streams: accepted.filter(Boolean).length }, 'trust bundle sent to streaming agents');
    });
  }

  #serially<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(work, work);
    this.#queue = run.catch(() => undefined);
    return run;
  }
}

/** Hex trustBundleDigest of `bundle`; '' for none (what an agent holding none reports). */
function bundleDigest(bundle: TrustBundle | undefined): string {
  return bundle === undefined ? '' : trustBundleDigest(bundle.generation, bundle.caPems.map((pem) => new X509Certificate(pem))).toString('hex');
}

function toWire(bundle: TrustBundle): TrustBundleMessage {
  return { generation: bundle.generation, ca_certificates_pem: [...bundle.caPems], signature: Buffer.from(bundle.signature) };
}
