import { Argument, Command, Option } from 'commander';
import type { CertsStatus } from '../pki/certificate-service.ts';
import { AdminClient } from './admin-client.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';
import { printObject, printRows } from './output.ts';

interface RotateCaOptions extends CommonOptions {
  force: boolean;
}

/** `certs status | rotate-server | rotate-ca start|switch|finish`: the running appliance's certificates. */
export function certsCommand(): Command {
  const certs = new Command('certs').description("show and rotate the appliance's TLS certificates and CA");
  certs
    .command('status')
    .description('the CA rotation phase, the served certificate, and how many active hosts hold the current trust bundle')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => printStatus(await new AdminClient(options.dataDir).call<CertsStatus>('GET', '/api/v1/certs'), options.json));
  certs
    .command('rotate-server')
    .description("issue a new server certificate for the SANs in the appliance's configuration (read again: edit sans, then run this) and serve it without a restart; agents keep trusting the CA")
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: CommonOptions) => printStatus(await new AdminClient(options.dataDir).call<CertsStatus>('POST', '/api/v1/certs/rotate-server', {}), options.json));
  certs
    .command('rotate-ca')
    .description('rotate the CA in three steps: start (agents get the next CA), switch (the server certificate comes from the next CA), finish (the old CA is retired)')
    .addArgument(new Argument('<step>', 'start | switch | finish').choices(['start', 'switch', 'finish']))
    .addOption(new Option('--force', 'switch although active hosts have not confirmed the next CA (they will fail TLS)').default(false))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (step: 'start' | 'switch' | 'finish', options: RotateCaOptions) => {
      const status = await new AdminClient(options.dataDir).call<CertsStatus>('POST', '/api/v1/certs/rotate-ca', { step, force: options.force });
      printStatus(status, options.json);
    });
  return certs;
}

function printStatus(status: CertsStatus, json: boolean): void {
  if (json) return printObject({ ...status }, true);
  const { hosts, server_certificate: leaf } = status;
  printObject(
    {
      phase: status.phase,
      trust_generation: status.generation,
      ca_fingerprint: status.ca_fingerprint,
      next_ca_fingerprint: status.next_ca_fingerprint,
      server_certificate: leaf.fingerprint,
      server_issuer: leaf.issuer,
      server_sans: leaf.sans.join(', '),
      server_not_after: leaf.not_after,
      active_hosts: hosts.active,
      with_bundle: `${hosts.online_with_bundle} online, ${hosts.offline_with_bundle} offline`,
      without_bundle: `${hosts.online_without} online, ${hosts.offline_without} offline`,
    },
    false,
  );
  if (status.without_bundle.length > 0) {
    process.stdout.write('\nhosts without the current trust bundle:\n');
    printRows(status.without_bundle, ['host_id', 'hostname', 'online', 'trust_generation'], false);
  }
  if (status.pending.length > 0) {
    process.stdout.write('\npending hosts (no trust bundle until approved):\n');
    printRows(status.pending, ['host_id', 'hostname'], false);
  }
}
