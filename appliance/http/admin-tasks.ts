import type { FastifyInstance } from 'fastify';
import { idPatternSource } from '../../common/ids.ts';
import type { Task } from '../model/task.ts';
import { TASK_STATES, TASK_TYPES, type TaskState, type TaskType } from '../tasks/index.ts';
import type { HttpContext } from './context.ts';
import { hostIdParams, iso, nullableString } from './views.ts';


/** A task as the admin API shows it. */
export function taskView(task: Task) {
  return {
    id: task.id,
    host_id: task.hostId,
    type: task.type,
    state: task.state,
    payload: task.payload,
    result: task.result,
    output: task.output,
    error_code: task.errorCode,
    created_at: iso(task.createdAt),
    created_by: task.createdBy,
    sent_at: iso(task.sentAt),
    acknowledged_at: iso(task.acknowledgedAt),
    started_at: iso(task.startedAt),
    finished_at: iso(task.finishedAt),
    timeout_secs: task.timeoutMs / 1000,
    deadline_at: iso(task.deadlineAt),
    expires_at: iso(task.expiresAt),
    attempts: task.attempts,
  };
}


export const taskSchema = {
  type: 'object',
  required: ['id', 'host_id', 'type', 'state', 'created_at', 'expires_at', 'attempts'],
  properties: {
    id: { type: 'string' },
    host_id: { type: 'string' },
    type: { type: 'string', enum: TASK_TYPES },
    state: { type: 'string', enum: TASK_STATES },
    payload: { type: 'object', additionalProperties: true },
    result: {},
    output: nullableString,
    error_code: nullableString,
    created_at: { type: 'string' },
    created_by: { type: 'string' },
    sent_at: nullableString,
    acknowledged_at: nullableString,
    started_at: nullableString,
    finished_at: nullableString,
    timeout_secs: { type: 'number' },
    deadline_at: nullableString,
    expires_at: { type: 'string' },
    attempts: { type: 'integer' },
  },
} as const;

const taskIdParams = { type: 'object', required: ['id'], properties: { id: { type: 'string', pattern: idPatternSource('tsk') } } } as const;
const DEFAULT_LIST_LIMIT = 100;
const listQuery = {
  type: 'object',
  additionalProperties: false,
  properties: {
    host_id: { type: 'string', pattern: idPatternSource('hst') },
    state: { type: 'string', enum: TASK_STATES },
    // Query values are text and the server does not coerce types: digits here, a number below.
    limit: { type: 'string', pattern: '^(1000|[1-9][0-9]{0,2})$' },
  },
} as const;

export async function adminTaskRoutes(app: FastifyInstance, ctx: HttpContext): Promise<void> {
  const { orgId } = ctx;
  const { tasks } = ctx.services;

  app.get<{ Querystring: { host_id?: string; state?: TaskState; limit?: string } }>('/api/v1/tasks', {
    schema: { querystring: listQuery, response: { 200: { type: 'array', items: taskSchema } } },
    handler: async (request) => {
      const { host_id: hostId, state, limit } = request.query;
      const filter = { ...(hostId ? { hostId } : {}), ...(state ? { state } : {}), limit: limit === undefined ? DEFAULT_LIST_LIMIT : Number(limit) };
      return (await tasks.list(orgId, filter)).map(taskView);
    },
  });

  app.get<{ Params: { id: string } }>('/api/v1/tasks/:id', {
    schema: { params: taskIdParams, response: { 200: taskSchema } },
    handler: async (request) => taskView(await tasks.get(orgId, request.params.id)),
  });

  app.post<{ Params: { id: string } }>('/api/v1/tasks/:id/cancel', {
    schema: { params: taskIdParams, response: { 200: taskSchema } },
    handler: async (request) => taskView(await tasks.cancel(orgId, request.params.id, request.adminName)),
  });

  // A task an admin asks of one host: queued, and sent at once when the agent is online.
  const hostTasks = { rescan: 'software_inventory', 'reload-config': 'config_reload' } as const satisfies Record<string, TaskType>;
  for (const [action, type] of Object.entries(hostTasks)) {
    app.post<{ Params: { id: string } }>(`/api/v1/hosts/:id/${action}`, {
      schema: { params: hostIdParams, response: { 200: taskSchema, 201: taskSchema } },
      handler: async (request, reply) => {
        const { task, created } = await tasks.create(orgId, { type, hostId: request.params.id, by: request.adminName });
        reply.code(created ? 201 : 200);
        return taskView(task);
      },
    });
  }
}
