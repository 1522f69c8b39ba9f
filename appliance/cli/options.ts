import { Option } from 'commander';

export interface CommonOptions {
  dataDir: string;
  json: boolean;
}

export const dataDirOption = (): Option =>
  new Option('--data-dir <dir>', "the appliance's data directory").env('CT_OPS_APPLIANCE_DATA_DIR').default('./data');

export const jsonOption = (): Option => new Option('--json', 'print JSON for scripts').default(false);
