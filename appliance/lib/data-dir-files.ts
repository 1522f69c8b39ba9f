/**
 * Files of the appliance's data directory that other processes read: the admin CLI finds and
 * calls the running appliance through them, and ct-ops-bundle reads the CA. Kept apart from the
 * server's modules so that those processes do not load the server to learn a file name.
 */

/** The SQLite database (appliance/store; backups copy it, the doctor inspects it read-only). */
export const DATABASE_FILE = 'appliance.db';
/** The appliance CA certificate (PEM) that agents trust. */
export const CA_CERT_FILE = 'ca.crt';
/** JSON { admin_api: URL, grpc_port, pid }, written once the listeners are up. */
export const ENDPOINT_FILE = 'appliance.json';
/** The local admin CLI's API credential (mode 0600). */
export const CLI_CREDENTIAL_FILE = 'admin-cli.token';
/** The next CA of a rotation in progress (PEM), trusted beside CA_CERT_FILE until the rotation finishes. */
export const CA_NEXT_CERT_FILE = 'ca-next.crt';
/** The first admin's one-time password (mode 0600) when the appliance's output goes to the journal; removed at that admin's first login. */
export const INITIAL_PASSWORD_FILE = 'initial-admin-password';
