import type { Logger } from 'pino';
import type { DownloadLimits } from './agent-downloads.ts';
import type { AgentJwtAuthority } from '../auth/agent-jwt.ts';
import type { EventLoopWatch } from '../health/event-loop-watch.ts';
import type { CertificateService } from '../pki/certificate-service.ts';
import type { JwtSigningKey } from '../pki/jwt-signing-key.ts';
import type { PresenceRegistry } from '../presence/registry.ts';
import type { Services } from '../services.ts';
import type { Stores } from '../store/index.ts';

/** What the HTTP plugins need from the running appliance. */
export interface HttpContext {
  /** The appliance's data directory (keys, CA, built bundles). */
  dataDir: string;
  stores: Stores;
  /** The workflows' owners; handlers call these. */
  services: Services;
  orgId: string;
  presence: PresenceRegistry;
  jwt: AgentJwtAuthority;
  jwtKey: JwtSigningKey;
  certs: CertificateService;
  log: Logger;
  /** This process's event-loop delay, for the runtime route. */
  loopWatch: EventLoopWatch;
  /** Limits on serving agent releases (agent-downloads.ts); DEFAULT_DOWNLOAD_LIMITS when not given. */
  downloadLimits?: DownloadLimits;
}
