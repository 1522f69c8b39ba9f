/**
 * The proof a retired agent key gives for the new key that succeeds it (RegisterRequest
 * predecessor_signature): an Ed25519 signature by the retired key over these bytes, the UTF-8
 * domain "ct-ops-successor-v1\n" followed by the new raw 32-byte public key. Binding the new key
 * means the proof cannot serve any other key; the new key's own Register signature (with its nonce
 * and timestamp) makes the request itself fresh.
 */
export const SUCCESSOR_PROOF_DOMAIN = 'ct-ops-successor-v1\n';

export function successorProofPayload(newPublicKey: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(SUCCESSOR_PROOF_DOMAIN, 'utf8'), Buffer.from(newPublicKey)]);
}
