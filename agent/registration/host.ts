import { hostname } from 'node:os';
import { PRODUCT_VERSION } from '../../common/version.ts';
import type { AgentConfig } from '../config/types.ts';
import { osName, type HostDescription } from './request.ts';

/** This host as the Register request describes it. The agent reports its compiled version. */
export function describeHost(config: AgentConfig, machineFingerprint: string): HostDescription {
  return Object.freeze({
    hostname: hostname(),
    machineFingerprint,
    os: osName(process.platform),
    arch: process.arch,
    agentVersion: PRODUCT_VERSION,
    tags: config.tags,
    ...(config.installBundleId !== '' && { installBundleId: config.installBundleId }),
  });
}
