/**
 * The enrolment token a bundle carries. The appliance stores only token hashes, so:
 *   new       creates a single-use token (source "install-bundle") and embeds its secret;
 *   existing  embeds a token the operator already holds: the secret must be given and
 *             must hash to that token id, and the token must still be usable;
 *   none      embeds nothing (the operator sets CT_OPS_ORG_TOKEN on the host).
 */
import { CtOpsError } from '../../common/errors.ts';
import { createEnrolmentToken, tokenState } from '../../appliance/enrolment/tokens.ts';
import { hashSecret } from '../../appliance/lib/ids.ts';
import type { Stores } from '../../appliance/store/index.ts';
import type { Tags, TokenChoice, TokenMode } from '../lib/validate.ts';
import { targetName, type Target } from '../lib/targets.ts';

/** Where tokens live: the appliance database and the organisation bundles are made for. */
export interface TokenAuthority {
  readonly stores: Stores;
  readonly orgId: string;
}

export interface BundleToken {
  readonly mode: TokenMode;
  readonly id?: string;
  /** Only ever written into agent.toml. */
  readonly secret?: string;
  readonly expiresAt?: number;
}

export interface TokenContext {
  readonly target: Target;
  readonly bundleId: string;
  readonly createdBy: string;
  readonly label: string;
  readonly tags: Tags;
}

function requireAuthority(authority: TokenAuthority | undefined): TokenAuthority {
  if (!authority) throw new CtOpsError('ERR_INTERNAL', 'token modes new and existing need the appliance database');
  return authority;
}

export async function resolveBundleToken(choice: TokenChoice, authority: TokenAuthority | undefined, context: TokenContext, now: number): Promise<BundleToken> {
  switch (choice.mode) {
    case 'none':
      return { mode: 'none' };
    case 'new': {
      const { stores, orgId } = requireAuthority(authority);
      const { os, arch } = context.target;
      const created = await createEnrolmentToken(
        stores,
        orgId,
        {
          label: context.label || `install bundle ${targetName(context.target)} ${context.bundleId}`,
          expiresInMs: choice.expiresInMs,
          maxUses: 1,
          autoApprove: false,
          tags: context.tags,
          createdBy: context.createdBy,
          source: 'install-bundle',
          metadata: { os, arch, bundle_id: context.bundleId, created_by: context.createdBy },
        },
        now,
      );
      return { mode: 'new', id: created.token.id, secret: created.secret, expiresAt: created.token.expiresAt };
    }
    case 'existing': {
      const { stores, orgId } = requireAuthority(authority);
      const token = await stores.enrolmentTokens.get(choice.id);
      if (!token || token.orgId !== orgId) throw new CtOpsError('ERR_ENROLMENT_TOKEN_NOT_FOUND', `no enrolment token ${choice.id}`, { token_id: choice.id });
      if ((await stores.enrolmentTokens.findBySecretHash(hashSecret(choice.secret)))?.id !== token.id) {
        throw new CtOpsError('ERR_BUNDLE_TOKEN_UNUSABLE', `the secret given is not the secret of ${token.id}`, { token_id: token.id, reason: 'secret_mismatch' });
      }
      const state = tokenState(token, now);
      if (state !== 'active') {
        throw new CtOpsError('ERR_BUNDLE_TOKEN_UNUSABLE', `enrolment token ${token.id} is ${state}: hosts could not enrol with it`, { token_id: token.id, reason: state });
      }
      return { mode: 'existing', id: token.id, secret: choice.secret, expiresAt: token.expiresAt };
    }
  }
}

/**
 * Withdraws the token a bundle embeds when the bundle will reach nobody (it could not be written,
 * kept or downloaded): a token of mode new was made for that bundle alone and is revoked; an
 * existing token serves others and stays. Resolves true when it revoked one now (false: nothing to
 * revoke, no authority, or revoked already).
 */
export async function withdrawBundleToken(token: Pick<BundleToken, 'mode' | 'id'>, authority: TokenAuthority | undefined, now: number): Promise<boolean> {
  if (token.mode !== 'new' || token.id === undefined || !authority) return false;
  return authority.stores.enrolmentTokens.revoke(token.id, now);
}
