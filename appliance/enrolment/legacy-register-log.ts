import type { Logger } from 'pino';

/** Keys remembered as logged; past this the memory is cleared and each key may be logged once more. */
const LOGGED_KEYS_MAX = 10_000;

/**
 * Logs each agent key's legacy-form (register/v1, clock-dependent) Register once per appliance
 * run, at info, with its agent_version: the admin sees which hosts still run an agent that needs
 * a correct clock to enrol, without a line per retry. Memory is bounded (LOGGED_KEYS_MAX).
 */
export class LegacyRegisterLog {
  readonly #logged = new Set<string>();

  noted(publicKey: Buffer, agentVersion: string, log: Logger): void {
    const key = publicKey.toString('base64url');
    if (this.#logged.has(key)) return;
    if (this.#logged.size >= LOGGED_KEYS_MAX) this.#logged.clear();
    this.#logged.add(key);
    log.info({ register_form: 'legacy', agent_version: agentVersion, public_key_prefix: key.slice(0, 12) }, 'legacy Register (agent without GetRegisterChallenge)');
  }
}

/** One per appliance process: the log is per run. */
export const legacyRegisterLog = new LegacyRegisterLog();
