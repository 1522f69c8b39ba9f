import { Command, Option } from 'commander';
import { TASK_STATES } from '../tasks/states.ts';
import { AdminClient } from './admin-client.ts';
import { dataDirOption, jsonOption, type CommonOptions } from './options.ts';
import { printObject, printRows } from './output.ts';

const TASK_COLUMNS = ['id', 'host_id', 'type', 'state', 'created_at', 'attempts', 'expires_at', 'finished_at', 'error_code'];

interface ListOptions extends CommonOptions {
  host?: string;
  state?: string;
}

export function tasksCommand(): Command {
  const tasks = new Command('tasks').description('list, show and cancel tasks queued for agents');
  tasks
    .command('list')
    .description('list tasks, newest first')
    .option('--host <id>', 'only tasks of this host (hst_...)')
    .addOption(new Option('--state <state>', 'only tasks in this state').choices(TASK_STATES))
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (options: ListOptions) => {
      const query = new URLSearchParams();
      if (options.host) query.set('host_id', options.host);
      if (options.state) query.set('state', options.state);
      const path = query.size > 0 ? `/api/v1/tasks?${query}` : '/api/v1/tasks';
      printRows(await new AdminClient(options.dataDir).call<Record<string, unknown>[]>('GET', path), TASK_COLUMNS, options.json);
    });
  tasks
    .command('show')
    .description('show one task with its result and output')
    .argument('<id>', 'task id (tsk_...)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('GET', `/api/v1/tasks/${encodeURIComponent(id)}`), options.json);
    });
  tasks
    .command('cancel')
    .description('cancel a task that has not finished')
    .argument('<id>', 'task id (tsk_...)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (id: string, options: CommonOptions) => {
      printObject(await new AdminClient(options.dataDir).call('POST', `/api/v1/tasks/${encodeURIComponent(id)}/cancel`), options.json);
    });
  return tasks;
}
