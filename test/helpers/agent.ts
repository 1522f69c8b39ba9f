import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_BIN, LoggedProcess } from './processes.ts';

export interface AgentSetup {
  address: string;
  /** Written as [ingest] addresses instead of `address` when given (the agent tries them in order). */
  addresses?: readonly string[];
  caCertFile: string;
  orgToken?: string;
  intervalSecs?: number;
  /** Extra TOML appended to the [agent] table. */
  extraAgentToml?: string;
}

/**
 * A sandbox for one real agent: its own config file, data directory and machine id
 * (so several agents on this one test machine are not taken for clones).
 */
export class TestAgent {
  readonly root: string;
  readonly configPath: string;
  readonly dataDir: string;
  readonly machineIdFile: string;
  process: LoggedProcess | undefined;

  constructor(setup: AgentSetup) {
    this.root = mkdtempSync(join(tmpdir(), 'ct-ops-agent-'));
    this.configPath = join(this.root, 'agent.toml');
    this.dataDir = join(this.root, 'data');
    this.machineIdFile = join(this.root, 'machine-id');
    writeFileSync(this.machineIdFile, `${randomBytes(16).toString('hex')}\n`);
    this.writeConfig(setup);
  }

  writeConfig(setup: AgentSetup): void {
    const lines = [
      '[ingest]',
      setup.addresses === undefined ? `address = ${JSON.stringify(setup.address)}` : `addresses = ${JSON.stringify(setup.addresses)}`,
      `ca_cert_file = ${JSON.stringify(setup.caCertFile)}`,
      '',
      '[agent]',
      ...(setup.orgToken !== undefined ? [`org_token = ${JSON.stringify(setup.orgToken)}`] : []),
      `data_dir = ${JSON.stringify(this.dataDir)}`,
      `heartbeat_interval_secs = ${setup.intervalSecs ?? 5}`,
      ...(setup.extraAgentToml ? [setup.extraAgentToml] : []),
    ];
    writeFileSync(this.configPath, `${lines.join('\n')}\n`);
  }

  /** The agent's agent_state.json. */
  state(): { agent_id: string; jwt: string } {
    return JSON.parse(readFileSync(join(this.dataDir, 'agent_state.json'), 'utf8')) as { agent_id: string; jwt: string };
  }

  start(args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): LoggedProcess {
    this.process = new LoggedProcess(process.execPath, [AGENT_BIN, '-config', this.configPath, ...args], {
      CT_OPS_MACHINE_ID_FILE: this.machineIdFile,
      CT_OPS_LOG_LEVEL: 'debug',
      ...env,
    });
    return this.process;
  }

  async stop(): Promise<void> {
    await this.process?.stop();
  }

  async dispose(): Promise<void> {
    await this.process?.stop('SIGKILL');
    rmSync(this.root, { recursive: true, force: true });
  }
}

/** A TestAgent sandbox run by a single executable instead of `node dist/ct-ops-agent.cjs`. */
export class ExecutableAgent extends TestAgent {
  readonly command: readonly string[];

  constructor(setup: AgentSetup, command: readonly string[]) {
    super(setup);
    this.command = command;
  }

  override start(args: readonly string[] = [], env: NodeJS.ProcessEnv = {}): LoggedProcess {
    const [program, ...prefix] = this.command;
    this.process = new LoggedProcess(program!, [...prefix, '-config', this.configPath, ...args], {
      CT_OPS_MACHINE_ID_FILE: this.machineIdFile,
      CT_OPS_LOG_LEVEL: 'debug',
      ...env,
    });
    return this.process;
  }
}
