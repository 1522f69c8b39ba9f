/**
 * The closed catalogue of CT-Ops error codes. Every failure the appliance, the agent
 * or a CLI reports carries one of these codes; STATUS maps each code to the HTTP
 * status, gRPC status and process exit code it surfaces as. docs/errors.md lists
 * them all (a test fails when one is missing there).
 */

/** gRPC status numbers (google.rpc.Code), kept here so the agent need not import grpc for them. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcCodeNumber = (typeof GrpcCode)[keyof typeof GrpcCode];

/** Exit codes follow sysexits(3) so service managers and scripts can tell failures apart. */
export const ExitCode = {
  OK: 0,
  SOFTWARE: 70,
  USAGE: 64,
  DATA: 65,
  NO_INPUT: 66,
  UNAVAILABLE: 69,
  CANT_CREATE: 73,
  TEMP_FAIL: 75,
  NO_PERMISSION: 77,
  CONFIG: 78,
} as const;
export type ExitCodeNumber = (typeof ExitCode)[keyof typeof ExitCode];

interface Surface {
  readonly http: number;
  readonly grpc: GrpcCodeNumber;
  readonly exit: ExitCodeNumber;
  readonly summary: string;
}

export const STATUS = {
  ERR_CONFIG_INVALID: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.CONFIG, summary: 'A configuration file, environment variable or flag is malformed, of the wrong type or out of range.' },
  ERR_CONFIG_UNREADABLE: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.CONFIG, summary: 'A configuration file or a file it names (CA certificate) cannot be read.' },
  ERR_USAGE: { http: 400, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.USAGE, summary: 'A command was called with missing or malformed arguments.' },
  ERR_DATA_DIR_UNUSABLE: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.CANT_CREATE, summary: 'The data directory cannot be created, read or written, or holds a damaged file.' },
  ERR_LISTEN_FAILED: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.UNAVAILABLE, summary: 'The appliance cannot listen on a configured address and port (in use, or not permitted).' },
  ERR_DATABASE: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'The embedded database reported an unexpected error.' },
  ERR_STORAGE_FULL: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: 'The volume holding the database is full: the write was refused and nothing of it was acknowledged; writes succeed again once space is freed.' },
  ERR_STORAGE_UNAVAILABLE: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: 'The database cannot be written: an I/O error, a read-only file system or file, a lock held past the busy timeout, or a PostgreSQL server that cannot be reached or is shutting down.' },
  ERR_STORAGE_CORRUPT: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.SOFTWARE, summary: 'The database file is damaged or is not a database (on PostgreSQL: the server reports data or index corruption): restore it from a backup.' },
  ERR_SCHEMA_TOO_NEW: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'The database was written by a newer appliance version than this one.' },
  ERR_SCHEMA_OUTDATED: { http: 500, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: 'A tool that never migrates (ct-ops-bundle build on a stopped appliance) found an older database schema: start the appliance once to upgrade it.' },
  ERR_INTERNAL: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'An unexpected internal error.' },
  ERR_INVALID_ARGUMENT: { http: 400, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A request message or body failed validation.' },
  ERR_TOKEN_REQUIRED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.CONFIG, summary: 'Register from an unknown key came without an enrolment token.' },
  ERR_TOKEN_INVALID: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.CONFIG, summary: 'The enrolment token is not one the appliance issued.' },
  ERR_TOKEN_EXPIRED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.CONFIG, summary: 'The enrolment token has expired.' },
  ERR_TOKEN_REVOKED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.CONFIG, summary: 'The enrolment token was revoked by an admin.' },
  ERR_TOKEN_EXHAUSTED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.CONFIG, summary: 'The enrolment token has been used as many times as it allows.' },
  ERR_REGISTER_SIGNATURE_INVALID: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'A Register request was not signed by the private key of the public key it carries.' },
  ERR_REGISTER_STALE: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.TEMP_FAIL, summary: "A Register request's timestamp is too far from the appliance's clock (stale, or the host clock is wrong)." },
  ERR_REGISTER_REPLAYED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'A Register request was seen before (same key and challenge, or same key and nonce in the legacy form).' },
  ERR_REGISTER_CHALLENGE_EXPIRED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.TEMP_FAIL, summary: "A Register request's challenge is older than its lifetime by the appliance's clock; ask for a fresh one." },
  ERR_REGISTER_CHALLENGE_INVALID: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: "A Register request's challenge was not issued by this appliance (malformed or forged)." },
  ERR_REGISTER_THROTTLED: { http: 429, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.TEMP_FAIL, summary: 'Too many Register requests from this source address failed recently; retry after the hint (gRPC trailing metadata `retry-after-ms`).' },
  ERR_JWT_MISSING: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'The call carried no `authorization: Bearer` metadata.' },
  ERR_JWT_INVALID: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'The JWT is malformed, signed by another key or algorithm, or meant for another issuer or audience.' },
  ERR_JWT_EXPIRED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'The JWT has expired; the agent registers again by key.' },
  ERR_AGENT_MISMATCH: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'A message names an agent other than the one its JWT was issued to.' },
  ERR_STREAM_RATE_LIMITED: { http: 429, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.TEMP_FAIL, summary: "An agent sent heartbeat messages (or opened streams) faster than its host's rate limit; the stream was ended with a retry hint (gRPC trailing metadata `retry-after-ms`)." },
  ERR_STREAM_SLOW_CONSUMER: { http: 429, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.TEMP_FAIL, summary: 'The peer of a stream did not read what the appliance wrote to it within the drain deadline (15 s): the stream was ended (the peer receives the status after what it had not read); the agent reconnects.' },
  ERR_STREAM_CLOSED: { http: 503, grpc: GrpcCode.CANCELLED, exit: ExitCode.TEMP_FAIL, summary: 'A stream ended (cancelled by the peer, its connection lost, or its status already sent) before a message written to it was accepted: the message may not have reached the peer.' },
  ERR_MESSAGE_TOO_LARGE: { http: 413, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.DATA, summary: 'A gRPC request message is larger than its method accepts (Register 64 KiB, Heartbeat 1 MiB); refused before it is decoded.' },
  ERR_AGENT_NOT_ACTIVE: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'The agent is pending, rejected or revoked, so it may not stream.' },
  ERR_AGENT_REVOKED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'The appliance revoked or rejected this host: the agent stops and does not retry.' },
  ERR_INGEST_UNREACHABLE: { http: 502, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.UNAVAILABLE, summary: 'The agent cannot reach the ingest address (refused, unresolvable, timed out).' },
  ERR_INGEST_TLS_CLOCK: { http: 502, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: "The ingest service's certificate has expired or is not yet valid by this host's clock: most often the host clock is wrong (a reset RTC before NTP sets it); the agent keeps retrying." },
  ERR_INGEST_TLS_UNTRUSTED: { http: 502, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.CONFIG, summary: "The ingest service's certificate is not trusted by ca_cert_file, or does not name the address." },
  ERR_ADMIN_UNAUTHENTICATED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'An admin API call had no valid admin credential.' },
  ERR_LOGIN_FAILED: { http: 401, grpc: GrpcCode.UNAUTHENTICATED, exit: ExitCode.NO_PERMISSION, summary: 'Wrong admin username or password.' },
  ERR_LOGIN_LOCKED: { http: 429, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.TEMP_FAIL, summary: 'Too many failed admin logins for this account or from this address: logins are refused until Retry-After has passed.' },
  ERR_ADMIN_USER_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No admin has that username (admin reset-password --user).' },
  ERR_ADMIN_LOCAL_ONLY: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'Only the local admin CLI credential (DATA_DIR/admin-cli.token) may call this admin API route (a password reset); a login session may not.' },
  ERR_ADMIN_FORBIDDEN: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: "The admin's role (viewer) may read, not change: the request would change something." },
  ERR_PASSWORD_CHANGE_REQUIRED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'The account holds a one-time password: its session may only change the password (POST /api/v1/auth/password, or the console) or log out.' },
  ERR_PASSWORD_REJECTED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A new admin password was refused: it needs 12 to 256 characters and may be neither the username nor the current password.' },
  ERR_ADMIN_USER_EXISTS: { http: 409, grpc: GrpcCode.ALREADY_EXISTS, exit: ExitCode.DATA, summary: 'An admin account already has that username (admin create).' },
  ERR_ADMIN_DISABLE_REFUSED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'That admin account may not be disabled: it holds the local admin CLI credential, or it is the last enabled admin.' },
  ERR_CSRF_INVALID: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: "A console request that changes something came without its session's CSRF token, or with a wrong one; reload the page." },
  ERR_CONSOLE_BUSY: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: 'The appliance holds as many live console streams as it allows (per session or in all): close another console tab; the browser retries by itself.' },
  ERR_CONSOLE_UNAVAILABLE: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.UNAVAILABLE, summary: "The console's browser files (dist/console) are missing: run `npm run build` (the image carries them). Agents and the API are served regardless." },
  ERR_API_TOKEN_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'The logged-in admin has no API token with that id (revoked, expired, or another admin\'s).' },
  ERR_HOST_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No host has that id.' },
  ERR_ENROLMENT_TOKEN_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No enrolment token has that id.' },
  ERR_HOST_STATE_CONFLICT: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: "The host's state does not allow that action (e.g. approving a revoked host)." },
  ERR_HOST_NOT_CONNECTED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: 'The action needs a live agent stream and the host has none.' },
  ERR_HOST_IDENTITY_CONFLICT: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: "Two machines use one host's key (a cloned identity): the host is flagged, its tasks and inventory are held until an admin runs `hosts resolve`, and a second machine's stream is ended with a retry hint (gRPC trailing metadata `retry-after-ms`)." },
  ERR_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No such route.' },
  ERR_BODY_TOO_LARGE: { http: 413, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.DATA, summary: 'A request body is larger than the admin API accepts (1 MiB).' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { http: 415, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A request body has a content type the admin API does not read (it reads application/json; a release import, application/x-tar or application/gzip).' },
  ERR_SIGNATURE_INVALID: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A minisign signature or public key is malformed, made by another key, or does not match the signed content.' },
  ERR_BUNDLE_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No install bundle has that file name (admin download), or the bundle zip given to verify does not exist.' },
  ERR_BUNDLE_INPUT_MISSING: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.NO_INPUT, summary: 'An input the bundler needs is missing or unreadable: the agent executable for the target or its signed SHA256SUMS, the bundle key, the CA certificate, the release public key, a bundle public key given to verify, or an install template.' },
  ERR_BUNDLE_INPUT_UNTRUSTED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'An agent executable does not match the release SHA256SUMS, or that SHA256SUMS is not signed by the release key the appliance trusts.' },
  ERR_BUNDLE_TOKEN_UNUSABLE: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'The existing enrolment token named for a bundle is revoked, expired or used up, or the secret given for it does not match.' },
  ERR_BUNDLE_ENTRY_INVALID: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A bundle zip is malformed or has an unsafe entry: absolute path, "..", backslash, symlink, duplicate name, or an entry outside the one top folder.' },
  ERR_BUNDLE_SIGNATURE_INVALID: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.NO_PERMISSION, summary: "A bundle's SHA256SUMS.minisig is missing, malformed, or not a valid signature of SHA256SUMS by the given bundle public key." },
  ERR_BUNDLE_TAMPERED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A bundle file does not match the signed SHA256SUMS, a listed file is missing, an unlisted file is present, or manifest.json disagrees with SHA256SUMS.' },
  ERR_BUNDLE_ZIP_AMBIGUOUS: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A bundle zip\'s structure could be read differently by different unzip tools (details.reason names the rule broken: bytes before the first entry, a gap or overlap between entries, a local header that disagrees with its central record, a second or misplaced central directory or end record, bytes after the end record, Zip64, encryption, an unknown method or extra field, a name that is not plain UTF-8, duplicate names, a comment with control bytes, compressed data that does not end where its size says); the verifier refuses it unread.' },
  ERR_BUNDLE_ZIP_TOO_LARGE: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A bundle zip declares more entries, a larger central directory or more bytes than any bundle has; refused from its end record before the rest is read.' },
  ERR_RELEASE_INVALID: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'An agent release given to import is not laid out as `npm run build:agents` writes one: SHA256SUMS or SHA256SUMS.minisig missing or malformed, a file it lists missing, not a regular file or larger than a release file can be, a name that is not a release file, no agent executable, a tar entry that is not a plain file in the top folder, or a signed version that is not MAJOR.MINOR.PATCH.' },
  ERR_RELEASE_UNTRUSTED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.NO_PERMISSION, summary: "An agent release's SHA256SUMS.minisig is not a valid signature of its SHA256SUMS by a release key the appliance trusts, or a file does not match the signed SHA-256; nothing of it was imported." },
  ERR_RELEASE_CONFLICT: { http: 409, grpc: GrpcCode.ALREADY_EXISTS, exit: ExitCode.DATA, summary: 'An agent release of that version is already imported with different files; a version names one set of bytes for good.' },
  ERR_RELEASE_OLDER: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'The agent release is older than one already imported; import it with --allow-older (allow_older) to keep it anyway.' },
  ERR_RELEASE_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No imported agent release has that version.' },
  ERR_ROLLOUT_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No agent rollout is open to pause or resume (start one with releases rollout VERSION).' },
  ERR_DOWNLOAD_BUSY: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: 'The appliance serves as many agent release downloads as it allows at once; retry after the Retry-After seconds (the download resumes where it stopped).' },
  ERR_RANGE_NOT_SATISFIABLE: { http: 416, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A download asked for a byte range outside the file (a partial file longer than the release\'s); Content-Range gives the length: download again from the start.' },
  ERR_UPDATE_NOT_NEWER: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: "An update offer names a version that is not newer than the agent's own (a downgrade or a repeat): refused, not retried." },
  ERR_UPDATE_WRONG_TARGET: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: "An update offer names an executable for another OS or architecture than the agent's: refused, not retried." },
  ERR_UPDATE_TOO_LARGE: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'An update offer or its download is larger than a release file may be (512 MiB), or the download grew past the offered size: refused, not retried.' },
  ERR_UPDATE_NO_RELEASE_KEY: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.CONFIG, summary: 'The agent has no release key pinned ([update] release_public_key in agent.toml, written by the bundler), so it cannot verify an update and takes none.' },
  ERR_UPDATE_SIGNATURE_INVALID: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.NO_PERMISSION, summary: "A downloaded release's SHA256SUMS.minisig is not a valid signature by the release key pinned in agent.toml, or its signed version is not the version offered: nothing was installed, and the version is not tried again." },
  ERR_UPDATE_HASH_MISMATCH: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A downloaded agent executable does not match the offered SHA-256 or the signed SHA256SUMS: nothing was installed, and the version is not tried again.' },
  ERR_UPDATE_DOWNLOAD_FAILED: { http: 503, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.TEMP_FAIL, summary: 'An agent could not complete an update download after its attempts (each resumed where the last stopped); the version is not tried again until offered anew after an agent restart.' },
  ERR_UPDATE_UNAVAILABLE: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.UNAVAILABLE, summary: "The agent cannot install an update on this host: the root helper's spool is missing or not writable (Linux, macOS) or did not answer, or the update watcher could not be started or its spool created (Windows)." },
  ERR_UPDATE_HELPER_REFUSED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'The root helper refused a staged update after verifying it itself (its reason follows the code).' },
  ERR_UPDATE_ROLLED_BACK: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'The new agent did not start, crashed or never opened a heartbeat stream within the settle period: the root helper restored the previous binary, which reports this.' },
  ERR_INVENTORY_COLLECTOR_FAILED: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: "A software inventory collector's tool exited non-zero, was killed, or printed output that cannot be parsed." },
  ERR_INVENTORY_TIMEOUT: { http: 504, grpc: GrpcCode.DEADLINE_EXCEEDED, exit: ExitCode.TEMP_FAIL, summary: 'A software inventory collection did not finish within its time limit.' },
  ERR_INVENTORY_OUTPUT_TOO_LARGE: { http: 500, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.DATA, summary: "A software inventory tool's output or database file exceeded the output cap." },
  ERR_INVENTORY_NO_PACKAGE_MANAGER: { http: 500, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.UNAVAILABLE, summary: "None of the platform's package managers is present on the host." },
  ERR_INVENTORY_SCAN_CONFLICT: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'An inventory chunk names a scan that belongs to another host.' },
  ERR_INVENTORY_SCAN_COMPLETED: { http: 409, grpc: GrpcCode.ALREADY_EXISTS, exit: ExitCode.DATA, summary: 'An inventory scan id was already completed (a replay); a new scan needs a new id.' },
  ERR_INVENTORY_SCAN_CLOSED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'An inventory scan id already failed; a new scan needs a new id.' },
  ERR_INVENTORY_SCAN_OUT_OF_ORDER: { http: 409, grpc: GrpcCode.ABORTED, exit: ExitCode.TEMP_FAIL, summary: 'An inventory chunk does not follow the chunks received for its scan.' },
  ERR_INVENTORY_SCAN_INCOMPLETE: { http: 409, grpc: GrpcCode.ABORTED, exit: ExitCode.TEMP_FAIL, summary: 'An inventory stream ended before its last chunk; nothing was marked removed.' },
  ERR_INVENTORY_SCAN_TOO_LARGE: { http: 413, grpc: GrpcCode.RESOURCE_EXHAUSTED, exit: ExitCode.DATA, summary: 'An inventory scan reported more packages than the per-scan limit; the scan failed and nothing it added was kept.' },
  ERR_TASK_NOT_FOUND: { http: 404, grpc: GrpcCode.NOT_FOUND, exit: ExitCode.NO_INPUT, summary: 'No task has that id.' },
  ERR_TASK_STATE_CONFLICT: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: "The task's state does not allow that action (e.g. cancelling a task that already finished)." },
  ERR_TASK_TIMEOUT: { http: 504, grpc: GrpcCode.DEADLINE_EXCEEDED, exit: ExitCode.TEMP_FAIL, summary: "A task was sent to its agent but did not finish within its type's time limit." },
  ERR_TASK_EXPIRED: { http: 504, grpc: GrpcCode.DEADLINE_EXCEEDED, exit: ExitCode.TEMP_FAIL, summary: 'A task stayed queued past its expiry because its host never connected.' },
  ERR_TASK_FAILED: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'The agent reported that a task failed without a more specific code.' },
  ERR_TASK_CANCELLED: { http: 409, grpc: GrpcCode.CANCELLED, exit: ExitCode.TEMP_FAIL, summary: 'An admin cancelled a task while its agent was running it; the agent stopped it.' },
  ERR_TASK_INTERRUPTED: { http: 503, grpc: GrpcCode.ABORTED, exit: ExitCode.TEMP_FAIL, summary: 'The agent restarted while it ran a task; the task is reported failed, never run again.' },
  ERR_TASK_UNSUPPORTED: { http: 501, grpc: GrpcCode.UNIMPLEMENTED, exit: ExitCode.UNAVAILABLE, summary: 'The agent does not know how to run a task of that type (an older agent).' },
  ERR_UNINSTALL_UNAVAILABLE: { http: 503, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.UNAVAILABLE, summary: 'The agent found no way to start its uninstaller (no root helper and not running as root, or no uninstaller installed).' },
  ERR_UNINSTALL_FAILED: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.SOFTWARE, summary: 'The uninstaller started but one of its removal steps failed; its log on the host says which.' },
  ERR_AGENT_KEY_RETIRED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'The key belongs to a deleted host: it is retired for good and the host must enrol afresh with a new key.' },
  ERR_IDENTITY_RETIRED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: 'An admin resolved a cloned identity in favour of another machine: this agent discards its key, creates a new one and enrols as a new pending host (with a proof signed by the retired key).' },
  ERR_KEY_ROTATION_REFUSED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: "A key rotation Register was refused: the proof does not verify, the old key is not the host's current key, or the rotation nonce is not the one the appliance offered (the agent keeps its current key and is offered a new rotation)." },
  ERR_TRUST_BUNDLE_INVALID: { http: 400, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'A trust bundle (HeartbeatResponse.trust) was refused by the agent: it is not signed by a CA the agent already trusts, holds something other than CA certificates, or is not newer than the one it holds. The agent keeps its current trust.' },
  ERR_CA_ROTATION_STATE: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.DATA, summary: 'The CA rotation step does not follow the current phase (`certs rotate-ca start`, then `switch`, then `finish`); `certs status` shows the phase.' },
  ERR_CA_ROTATION_INSTANCES: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: 'Other ingest instances serve from this database: a CA rotation on one would leave the others serving and pushing the old CA. Stop the others, rotate on this one, then provision them again from it (docs/operations.md, Adding an ingest instance).' },
  ERR_CA_ROTATION_UNACKNOWLEDGED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: 'Active hosts (named in the details) have not yet confirmed the trust bundle with the next CA: switching now would cut them off. Wait until they stream, or pass --force.' },
  ERR_SUCCESSOR_REFUSED: { http: 403, grpc: GrpcCode.PERMISSION_DENIED, exit: ExitCode.NO_PERMISSION, summary: "A Register with a retired key's proof was refused: the proof does not verify, or the retired key's host has no re-enrolment left (it was not resolved, or its retired machines already enrolled)." },
  ERR_BACKUP_PASSPHRASE_REQUIRED: { http: 400, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.USAGE, summary: 'A backup or restore needs a passphrase and got none (no --passphrase-file, no CT_OPS_BACKUP_PASSPHRASE, no terminal to ask on), or an empty one, or a backup passphrase shorter than 12 characters, or two typed passphrases that differ.' },
  ERR_BACKUP_PASSPHRASE_WRONG: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.NO_PERMISSION, summary: 'The passphrase does not decrypt this backup; nothing was written.' },
  ERR_BACKUP_DAMAGED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'The file is not a CT-Ops backup, or it is truncated or altered (an age authentication failure, a broken tar or gzip, a member missing, unlisted or not matching the manifest\'s SHA-256, a database that fails PRAGMA integrity_check); nothing was written.' },
  ERR_BACKUP_OUTPUT_EXISTS: { http: 409, grpc: GrpcCode.ALREADY_EXISTS, exit: ExitCode.CANT_CREATE, summary: 'The backup output file already exists; backup never overwrites one.' },
  ERR_BACKUP_OUTPUT_UNWRITABLE: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.CANT_CREATE, summary: 'The backup output file cannot be created or written (a read-only or full medium, a missing directory); what was written of it was removed.' },
  ERR_BACKUP_UNREADABLE: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.NO_INPUT, summary: 'The backup file given to restore does not exist or cannot be read.' },
  ERR_BACKUP_NOT_ENCRYPTED: { http: 422, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.DATA, summary: 'The backup is a plain (unencrypted, unauthenticated) archive, or its manifest disagrees with its format: restore takes a plain archive only with --unencrypted.' },
  ERR_APPLIANCE_RUNNING: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: "A process (the serving appliance) has the data directory's database open: stop the appliance before restoring over it." },
  ERR_DATA_DIR_LOCKED: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.TEMP_FAIL, summary: "Another process holds the data directory's lock (the message names it: the running appliance, a restore or a stopped-mode ct-ops-bundle build)." },
  ERR_RESTORE_OWNER_REQUIRED: { http: 400, grpc: GrpcCode.INVALID_ARGUMENT, exit: ExitCode.USAGE, summary: 'restore run as root into an absent data directory needs --owner USER (the service user, e.g. ct-ops-appliance), or the user given is unknown: root-owned files would keep the appliance from opening its data.' },
  ERR_RESTORE_TARGET_NOT_EMPTY: { http: 409, grpc: GrpcCode.FAILED_PRECONDITION, exit: ExitCode.CANT_CREATE, summary: 'restore was pointed at a data directory that holds files; give --force to keep it aside as DATA_DIR.before-restore-<time> and restore anyway.' },
  ERR_DOCTOR_FAILED: { http: 500, grpc: GrpcCode.INTERNAL, exit: ExitCode.UNAVAILABLE, summary: '`ct-ops-appliance doctor` found a problem: a check printed `fail` (a port held by another program, a key file readable by others, an expired certificate, a damaged database, a wrong clock, /healthz not answering 200).' },
  ERR_APPLIANCE_UNREACHABLE: { http: 502, grpc: GrpcCode.UNAVAILABLE, exit: ExitCode.UNAVAILABLE, summary: "The admin CLI cannot reach the appliance's admin API." },
} as const satisfies Record<string, Surface>;

export type ErrorCode = keyof typeof STATUS;
export const ERROR_CODES = Object.keys(STATUS) as ErrorCode[];

export type ErrorDetails = Readonly<Record<string, string | number | boolean | null | undefined>>;

export class CtOpsError extends Error {
  override readonly name = 'CtOpsError';
  readonly code: ErrorCode;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return STATUS[this.code].http;
  }

  get grpcStatus(): GrpcCodeNumber {
    return STATUS[this.code].grpc;
  }

  get exitCode(): ExitCodeNumber {
    return STATUS[this.code].exit;
  }

  /** The public shape of the error: code, message and details, never the cause chain. */
  toJSON(): { code: ErrorCode; message: string; details: ErrorDetails } {
    return { code: this.code, message: this.message, details: this.details };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(STATUS, value);
}

/**
 * The string `code` a caught value carries, whatever threw it: one of ours (CtOpsError), a driver's
 * (PostgreSQL SQLSTATE, better-sqlite3's SQLITE_*), Node's (ENOENT, EPIPE), or an error body's
 * `error.code`; undefined when it has none (also for null, undefined and primitives).
 */
export function errorCodeOf(value: unknown): string | undefined {
  const code = (value as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The catalogue code a caught value (or an error body's `error`) carries, undefined when it carries none of ours. */
export function catalogueCodeOf(value: unknown): ErrorCode | undefined {
  const code = errorCodeOf(value);
  return isErrorCode(code) ? code : undefined;
}

/** gRPC carries our code in the details text as "ERR_X: message" so any client can read it. */
export function grpcDetails(error: CtOpsError): string {
  return `${error.code}: ${error.message}`;
}

/** Recovers our error code from gRPC status details written by grpcDetails, if present. */
export function codeFromGrpcDetails(details: string | undefined): ErrorCode | undefined {
  const candidate = details?.split(':', 1)[0];
  return isErrorCode(candidate) ? candidate : undefined;
}
