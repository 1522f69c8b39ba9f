/** One host's row of `ct-ops-appliance releases status --json` (appliance/http/admin-releases.ts statusView). */
export interface HostStatus {
  host_id: string;
  agent_version: string;
  /** The version the phase is of. */
  update_version: string | null;
  phase: string | null;
  error_code: string | null;
  detail: string | null;
}
