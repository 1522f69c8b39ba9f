export { recordTask, type CreatedTask, type NewTaskRequest } from './create.ts';
export { applyTaskEvent, truncateUtf8 } from './events.ts';
export { FINISHED_STATES, TASK_EVENTS, TASK_STATES, TRANSITIONS, isFinished, nextTaskState, type TaskEvent, type TaskState } from './states.ts';
export { expireDue, type SweepResult } from './sweep.ts';
export { TASK_OUTPUT_LIMIT_BYTES, TASK_TYPE_LIMITS, TASK_TYPES, type TaskType } from './types.ts';
export { TaskService } from './service.ts';
