import { migration001Initial } from './001-initial.ts';
import { migration002SoftwareInventory } from './002-software-inventory.ts';
import { migration003HostFingerprintIndex } from './003-host-fingerprint-index.ts';
import { migration004Tasks } from './004-tasks.ts';
import { migration005HostDeletion } from './005-host-deletion.ts';
import { migration006HostIdentity } from './006-host-identity.ts';
import { migration007HostClockOffset } from './007-host-clock-offset.ts';
import { migration008PackageArchitecture } from './008-package-architecture.ts';
import { migration009RegisterNonceWatermark } from './009-register-nonce-watermark.ts';
import { migration010IdentityResolvedAt } from './010-identity-resolved-at.ts';
import { migration011IdentityKeyRotation } from './011-identity-key-rotation.ts';
import { migration012HostTrustGeneration } from './012-host-trust-generation.ts';
import { migration013HostTrustDigest } from './013-host-trust-digest.ts';
import { migration014ApplianceInstances } from './014-appliance-instances.ts';
import { migration015NameIndexPending } from './015-name-index-pending.ts';
import { migration016NameIndexRanges } from './016-name-index-ranges.ts';
import { migration017ReceivingScansIndex } from './017-receiving-scans-index.ts';
import { migration018AgentReleases } from './018-agent-releases.ts';
import { migration019Rollouts } from './019-rollouts.ts';
import { migration020ReleaseMinimum } from './020-release-minimum.ts';
import { migration021MaintenanceWindows } from './021-maintenance-windows.ts';
import { migration022AdminAccounts } from './022-admin-accounts.ts';
import { migration023AuditEvents } from './023-audit-events.ts';
import { migration024ConsoleIndexes } from './024-console-indexes.ts';
import { migration025ApiTokens } from './025-api-tokens.ts';
import { migration026InstallBundles } from './026-install-bundles.ts';
import { migration027FailedTasksIndex } from './027-failed-tasks-index.ts';
import { migration028FinishedTasksIndex } from './028-finished-tasks-index.ts';

export interface Migration {
  /** The schema version after this migration; PRAGMA user_version records it. */
  readonly version: number;
  readonly description: string;
  readonly sql: string;
}

/** Every migration in order. A new one is appended, never edited once released. */
export const MIGRATIONS: readonly Migration[] = [
  migration001Initial,
  migration002SoftwareInventory,
  migration003HostFingerprintIndex,
  migration004Tasks,
  migration005HostDeletion,
  migration006HostIdentity,
  migration007HostClockOffset,
  migration008PackageArchitecture,
  migration009RegisterNonceWatermark,
  migration010IdentityResolvedAt,
  migration011IdentityKeyRotation,
  migration012HostTrustGeneration,
  migration013HostTrustDigest,
  migration014ApplianceInstances,
  migration015NameIndexPending,
  migration016NameIndexRanges,
  migration017ReceivingScansIndex,
  migration018AgentReleases,
  migration019Rollouts,
  migration020ReleaseMinimum,
  migration021MaintenanceWindows,
  migration022AdminAccounts,
  migration023AuditEvents,
  migration024ConsoleIndexes,
  migration025ApiTokens,
  migration026InstallBundles,
  migration027FailedTasksIndex,
  migration028FinishedTasksIndex,
];
