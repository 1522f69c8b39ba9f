import type { Migration } from '../index.ts';
import { postgresMigration001Initial } from './001-initial.ts';
import { postgresMigration002SoftwareInventory } from './002-software-inventory.ts';
import { postgresMigration003HostFingerprintIndex } from './003-host-fingerprint-index.ts';
import { postgresMigration004Tasks } from './004-tasks.ts';
import { postgresMigration005HostDeletion } from './005-host-deletion.ts';
import { postgresMigration006HostIdentity } from './006-host-identity.ts';
import { postgresMigration007HostClockOffset } from './007-host-clock-offset.ts';
import { postgresMigration008PackageArchitecture } from './008-package-architecture.ts';
import { postgresMigration009RegisterNonceWatermark } from './009-register-nonce-watermark.ts';
import { postgresMigration010IdentityResolvedAt } from './010-identity-resolved-at.ts';
import { postgresMigration011IdentityKeyRotation } from './011-identity-key-rotation.ts';
import { postgresMigration012HostTrustGeneration } from './012-host-trust-generation.ts';
import { postgresMigration013HostTrustDigest } from './013-host-trust-digest.ts';
import { postgresMigration014ApplianceInstances } from './014-appliance-instances.ts';
import { postgresMigration015NameIndexPending } from './015-name-index-pending.ts';
import { postgresMigration016NameIndexRanges } from './016-name-index-ranges.ts';
import { postgresMigration017ReceivingScansIndex } from './017-receiving-scans-index.ts';
import { postgresMigration018AgentReleases } from './018-agent-releases.ts';
import { postgresMigration019Rollouts } from './019-rollouts.ts';
import { postgresMigration020ReleaseMinimum } from './020-release-minimum.ts';
import { postgresMigration021MaintenanceWindows } from './021-maintenance-windows.ts';
import { postgresMigration022AdminAccounts } from './022-admin-accounts.ts';
import { postgresMigration023AuditEvents } from './023-audit-events.ts';
import { postgresMigration024ConsoleIndexes } from './024-console-indexes.ts';
import { postgresMigration025ApiTokens } from './025-api-tokens.ts';
import { postgresMigration026InstallBundles } from './026-install-bundles.ts';
import { postgresMigration027FailedTasksIndex } from './027-failed-tasks-index.ts';
import { postgresMigration028FinishedTasksIndex } from './028-finished-tasks-index.ts';

/**
 * Every PostgreSQL migration in order, one per SQLite migration (store/migrations/index.ts) with
 * the same version: a new SQLite migration gets its PostgreSQL twin in the same change. Appended,
 * never edited once released. The version lives in the one-row table schema_version (store/postgres-migrate.ts).
 */
export const POSTGRES_MIGRATIONS: readonly Migration[] = [
  postgresMigration001Initial,
  postgresMigration002SoftwareInventory,
  postgresMigration003HostFingerprintIndex,
  postgresMigration004Tasks,
  postgresMigration005HostDeletion,
  postgresMigration006HostIdentity,
  postgresMigration007HostClockOffset,
  postgresMigration008PackageArchitecture,
  postgresMigration009RegisterNonceWatermark,
  postgresMigration010IdentityResolvedAt,
  postgresMigration011IdentityKeyRotation,
  postgresMigration012HostTrustGeneration,
  postgresMigration013HostTrustDigest,
  postgresMigration014ApplianceInstances,
  postgresMigration015NameIndexPending,
  postgresMigration016NameIndexRanges,
  postgresMigration017ReceivingScansIndex,
  postgresMigration018AgentReleases,
  postgresMigration019Rollouts,
  postgresMigration020ReleaseMinimum,
  postgresMigration021MaintenanceWindows,
  postgresMigration022AdminAccounts,
  postgresMigration023AuditEvents,
  postgresMigration024ConsoleIndexes,
  postgresMigration025ApiTokens,
  postgresMigration026InstallBundles,
  postgresMigration027FailedTasksIndex,
  postgresMigration028FinishedTasksIndex,
];
