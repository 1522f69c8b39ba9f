import { createHmac, hkdfSync, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { CtOpsError } from '../../common/errors.ts';

/**
 * How long a challenge may be used, by the appliance's clock: long enough for a loaded agent to
 * sign and send its Register, short enough that a captured challenge is soon worthless.
 */
export const REGISTER_CHALLENGE_LIFETIME_MS = 2 * 60_000;

const CHALLENGE_VERSION = 1;
const RANDOM_BYTES = 16;
const MAC_BYTES = 32;
/** version (1) ‖ issued_at_ms (8, big-endian) ‖ random (16) ‖ HMAC-SHA-256 of those 25 bytes (32). */
export const REGISTER_CHALLENGE_BYTES = 1 + 8 + RANDOM_BYTES + MAC_BYTES;
const MAC_KEY_INFO = 'ct-ops/register-challenge/v1';

export interface IssuedChallenge {
  challenge: Buffer;
  expiresInMs: number;
}

/** A challenge this appliance issued, still within its lifetime. */
export interface AcceptedChallenge {
  /** When the appliance's clock says it stops being accepted (ms since the epoch): its single-use record lasts until then. */
  expiresAt: number;
}

/**
 * Issues and checks Register challenges without storing them: each one carries its issue time
 * and a MAC by a key derived (HKDF) from the appliance's JWT signing key, so a flood of
 * challenge requests costs a MAC each and no memory or row, and a challenge survives an
 * appliance restart. Only the Register that uses a challenge is recorded (register-nonces.ts),
 * which makes it single-use per key; that record is pruned once the challenge expires.
 */
export class RegisterChallenges {
  readonly #macKey: Buffer;

  /** jwtSigningKey: the appliance's Ed25519 private key (appliance/pki/jwt-signing-key.ts). */
  constructor(jwtSigningKey: KeyObject) {
    const secret = jwtSigningKey.export({ format: 'der', type: 'pkcs8' });
    this.#macKey = Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), MAC_KEY_INFO, 32));
  }

  issue(nowMs: number): IssuedChallenge {
    const body = Buffer.alloc(1 + 8 + RANDOM_BYTES);
    body.writeUInt8(CHALLENGE_VERSION, 0);
    body.writeBigUInt64BE(BigInt(nowMs), 1);
    randomBytes(RANDOM_BYTES).copy(body, 9);
    return { challenge: Buffer.concat([body, this.#mac(body)]), expiresInMs: REGISTER_CHALLENGE_LIFETIME_MS };
  }

  /**
   * Checks a challenge by the appliance's clock alone (nowMs). Throws ERR_REGISTER_CHALLENGE_INVALID
   * when this appliance did not issue it, ERR_REGISTER_CHALLENGE_EXPIRED when it is older than
   * REGISTER_CHALLENGE_LIFETIME_MS (or issued that far ahead: the appliance's clock was set back).
   */
  check(challenge: Buffer, nowMs: number): AcceptedChallenge {
    const body = challenge.subarray(0, challenge.length - MAC_BYTES);
    const valid = challenge.length === REGISTER_CHALLENGE_BYTES && challenge[0] === CHALLENGE_VERSION && timingSafeEqual(this.#mac(body), challenge.subarray(body.length));
    if (!valid) throw new CtOpsError('ERR_REGISTER_CHALLENGE_INVALID', 'the Register challenge was not issued by this appliance; ask for a new one with GetRegisterChallenge');
    const issuedAt = Number(challenge.readBigUInt64BE(1));
    if (Math.abs(nowMs - issuedAt) > REGISTER_CHALLENGE_LIFETIME_MS) {
      throw new CtOpsError('ERR_REGISTER_CHALLENGE_EXPIRED', `the Register challenge is more than ${REGISTER_CHALLENGE_LIFETIME_MS / 1000} s old; ask for a new one with GetRegisterChallenge`, {
        age_ms: nowMs - issuedAt,
      });
    }
    return { expiresAt: issuedAt + REGISTER_CHALLENGE_LIFETIME_MS };
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#macKey).update(body).digest();
  }
}
