import type { Api } from './api';
import type { Task } from './gen/limiquantix/storage/v1/control_pb';
import type { Progress } from './gen/limiquantix/storage/v1/types_pb';
import { TaskState } from './gen/limiquantix/storage/v1/control_pb';

/** Follows a task through WatchTask (pushed, no polling) until it ends; a
 * failed or cancelled task is thrown as its message. */
export async function followTask(api: Api, taskId: string, onProgress?: (p: Progress) => void, onNews?: (t: Task) => void): Promise<Task> {
  for await (const t of api.tasks.watchTask({ taskId })) {
    if (t.progress && onProgress) onProgress(t.progress);
    onNews?.(t);
    if (t.state === TaskState.RUNNING) continue;
    if (t.state === TaskState.SUCCEEDED) return t;
    throw new TaskFailed(t);
  }
  throw new Error(`the watch of task ${taskId} ended without news`);
}

export class TaskFailed extends Error {
  constructor(public task: Task) {
    super(`task ${task.id} ${TaskState[task.state].toLowerCase()}: ${task.error}`);
  }
}
