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

/**
 * The proof of a key rotation (RegisterRequest.rotation_nonce set): an Ed25519 signature by the
 * host's current key over the UTF-8 domain "ct-ops-key-rotation-v1\n", the new raw 32-byte public
 * key and the rotation nonce the appliance sent (HeartbeatResponse.rotate_key). The nonce binds the
 * proof to the one rotation the appliance offered on the kept machine's stream; the domain keeps a
 * rotation proof from ever serving as a successor proof, and the reverse.
 */
export const KEY_ROTATION_PROOF_DOMAIN = 'ct-ops-key-rotation-v1\n';

export function keyRotationProofPayload(newPublicKey: Uint8Array, rotationNonce: Uint8Array): Uint8Array {
  return Buffer.concat([Buffer.from(KEY_ROTATION_PROOF_DOMAIN, 'utf8'), Buffer.from(newPublicKey), Buffer.from(rotationNonce)]);
}
