import { GrpcCode } from '../../common/errors.ts';
import type { IngestAddress } from '../config/address.ts';
import type { RpcFailure } from './types.ts';

/**
 * Which of the configured ingest addresses the agent uses now ([ingest] addresses, decisions.md
 * 120). The agent stays on one address until a transport failure there (isTransportFailure), then
 * moves to the next in the list, round robin; the transport reads `current` for each new call, so
 * one object is shared by the transport and the loop that decides when to move.
 */
export class IngestAddresses {
  readonly all: readonly IngestAddress[];
  private index = 0;

  /** @param all at least one address (AgentConfig['ingest']['addresses']). */
  constructor(all: readonly IngestAddress[]) {
    if (all.length === 0) throw new RangeError('at least one ingest address is needed');
    this.all = all;
  }

  get current(): IngestAddress {
    return this.all[this.index]!;
  }

  /** The place of `current` in the configured list (0-based), logged as address_index. */
  get currentIndex(): number {
    return this.index;
  }

  /** Moves to the next address (after the last: the first again) and returns it. */
  advance(): IngestAddress {
    this.index = (this.index + 1) % this.all.length;
    return this.current;
  }

  /** The log fields naming the address in use. */
  fields(): { address: string; address_unicode: string; address_index: number } {
    return { address: this.current.target, address_unicode: this.current.unicodeTarget, address_index: this.index };
  }
}

/**
 * Whether an RPC failed for a reason of the connection to that address, which another instance
 * may not share: UNAVAILABLE (refused, unreachable, reset, TLS, a stopping appliance) or
 * DEADLINE_EXCEEDED. Refusals of the credential or the host (UNAUTHENTICATED, PERMISSION_DENIED),
 * throttling and the appliance's other answers are the same at every instance: never one.
 */
export function isTransportFailure(failure: RpcFailure): boolean {
  return failure.grpcCode === GrpcCode.UNAVAILABLE || failure.grpcCode === GrpcCode.DEADLINE_EXCEEDED;
}
