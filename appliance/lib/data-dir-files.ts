/**
 * Files of the appliance's data directory that other processes read: the admin CLI finds and
 * calls the running appliance through them, and ct-ops-bundle reads the CA. Kept apart from the
 * server's modules so that those processes do not load the server to learn a file name.
 */

/** The appliance CA certificate (PEM) that agents trust. */
export const CA_CERT_FILE = 'ca.crt';
/** JSON { admin_api: URL, grpc_port, pid }, written once the listeners are up. */
export const ENDPOINT_FILE = 'appliance.json';
/** The appliance's SQLite database (the doctor inspects it read-only). */
export const DATABASE_FILE = 'appliance.db';
/** The local admin CLI's API credential (mode 0600). */
export const CLI_CREDENTIAL_FILE = 'admin-cli.token';
