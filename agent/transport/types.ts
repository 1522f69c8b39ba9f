import type { ErrorCode } from '../../common/errors.ts';
import type {
  HeartbeatRequest, HeartbeatResponse__Output, RegisterChallenge__Output, RegisterRequest, RegisterResponse__Output, SoftwareInventoryChunk, SoftwareInventoryResponse__Output,
} from '../../common/proto.ts';

/** How an RPC ended when it did not succeed: the gRPC status and our code from its details. */
export interface RpcFailure {
  readonly grpcCode: number;
  /** Recovered from details "ERR_X: message" written by the appliance, when present. */
  readonly errorCode: ErrorCode | undefined;
  readonly details: string;
  /** The appliance's retry hint (trailing metadata retry-after-ms, common/retry-hint.ts) when it throttled the call. */
  readonly retryAfterMs?: number | undefined;
}

/** How a unary RPC ended: its response, or why not. */
export type UnaryResult<Response> = { readonly ok: true; readonly response: Response } | { readonly ok: false; readonly failure: RpcFailure };

export type RegisterResult = UnaryResult<RegisterResponse__Output>;

export type ChallengeResult = UnaryResult<RegisterChallenge__Output>;

export type SubmitResult =
  | { readonly ok: true; readonly response: SoftwareInventoryResponse__Output }
  | { readonly ok: false; readonly failure: RpcFailure };

export interface HeartbeatHandlers {
  onMessage(message: HeartbeatResponse__Output): void;
  /** Called exactly once, with the final status (grpcCode 0 when the server ended cleanly). */
  onEnd(status: RpcFailure): void;
}

export interface HeartbeatCall {
  send(request: HeartbeatRequest): void;
  /** Half-closes and cancels the call; onEnd still fires (with CANCELLED). */
  close(): void;
}

/** The ingest service as the agent uses it: one method per RPC. */
export interface IngestTransport {
  /** A fresh challenge to sign into the next Register (an appliance without the RPC answers UNIMPLEMENTED). */
  getRegisterChallenge(): Promise<ChallengeResult>;
  register(request: RegisterRequest): Promise<RegisterResult>;
  /** Opens the Heartbeat stream with the JWT in call metadata (never in a message). */
  openHeartbeat(jwt: string, handlers: HeartbeatHandlers, options?: { reportOnly?: boolean }): HeartbeatCall;
  /** Streams one inventory scan's chunks (JWT in metadata); aborting the signal cancels the call. */
  submitInventory(jwt: string, chunks: readonly SoftwareInventoryChunk[], signal: AbortSignal): Promise<SubmitResult>;
  close(): void;
}
