import type { Migration } from './index.ts';

/**
 * Host identity (issue 9 §1, §4): which machines claimed a host's key, what an admin decided about
 * them, the host's refreshed descriptive facts, and a per-host event record.
 *
 * - hosts.identity_state: NULL normally; 'conflict' while two machines use the host's key (tasks
 *   and inventory are held); 'resolved' after an admin kept one of them, until the others have
 *   re-enrolled under new keys (identity_successors_allowed counts how many still may, once each).
 * - hosts.identity_kept_fingerprint / identity_kept_instance: the claimant the admin kept; a stream
 *   from another machine is told its identity is retired. The fingerprint when it tells the
 *   claimants apart, else the agent process instance (cloned VMs share the fingerprint).
 * - hosts.replaces / replaced_by: "approve as replacement" links a reimaged machine's new host and
 *   the old record it took over (the old one is soft-deleted, its key retired).
 * - host_claimants: the machines seen behind a host's key while it was flagged (one row per agent
 *   process instance), so an admin can pick one, also after an appliance restart.
 * - host_events: what happened to a host (renamed, identity conflict, resolved, replaced …) as an
 *   audit record; details is a JSON object. The kinds an agent repeats (renames, retired reconnects)
 *   are kept to the newest 200 each per host; the others follow admin decisions and are kept.
 */
export const migration006HostIdentity: Migration = {
  version: 6,
  description: 'host identity: claimants, conflict state, refreshed facts, replacement links, host events',
  sql: `
ALTER TABLE hosts ADD COLUMN os_version TEXT NOT NULL DEFAULT '';
ALTER TABLE hosts ADD COLUMN ip_addresses TEXT NOT NULL DEFAULT '[]';
ALTER TABLE hosts ADD COLUMN identity_state TEXT CHECK (identity_state IN ('conflict', 'resolved'));
ALTER TABLE hosts ADD COLUMN identity_kept_fingerprint TEXT;
ALTER TABLE hosts ADD COLUMN identity_kept_instance TEXT;
ALTER TABLE hosts ADD COLUMN identity_successors_allowed INTEGER NOT NULL DEFAULT 0 CHECK (identity_successors_allowed >= 0);
ALTER TABLE hosts ADD COLUMN replaces TEXT REFERENCES hosts(id);
ALTER TABLE hosts ADD COLUMN replaced_by TEXT REFERENCES hosts(id);

CREATE TABLE host_claimants (
  host_id              TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  instance_id          TEXT NOT NULL,
  machine_fingerprint  TEXT NOT NULL,
  hostname             TEXT NOT NULL,
  source               TEXT NOT NULL,
  first_seen           INTEGER NOT NULL,
  last_seen            INTEGER NOT NULL,
  PRIMARY KEY (host_id, instance_id)
) WITHOUT ROWID;

CREATE TABLE host_events (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  host_id  TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
  at       INTEGER NOT NULL,
  kind     TEXT NOT NULL,
  details  TEXT NOT NULL
);
CREATE INDEX host_events_host ON host_events(host_id, id);
`,
};
