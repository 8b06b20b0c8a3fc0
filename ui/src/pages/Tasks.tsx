import { useCallback, useEffect, useState } from 'react';
import {
  Alert,
  Button,
  DescriptionList,
  DescriptionListDescription,
  DescriptionListGroup,
  DescriptionListTerm,
  Drawer,
  DrawerActions,
  DrawerCloseButton,
  DrawerContent,
  DrawerContentBody,
  DrawerHead,
  DrawerPanelContent,
  Progress,
  Title,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { Code } from '@connectrpc/connect';
import type { Task } from '../gen/limiquantix/storage/v1/control_pb';
import { TaskState } from '../gen/limiquantix/storage/v1/control_pb';
import { errorText, formatBytes, formatTime, taskState } from '../api';
import { useSession } from '../session';
import { Empty, LoadError, Loading, useLoad } from '../components/common';

function percent(t: Task): number | null {
  const p = t.progress;
  if (!p || p.totalBytes === 0n) return null;
  return Number((p.doneBytes * 100n) / p.totalBytes);
}

export function Tasks() {
  const { api } = useSession();
  const load = useCallback(async () => (await api.tasks.listTasks({ pageSize: 50 })).tasks, [api]);
  const { data, error } = useLoad(load, 2000);
  const [selected, setSelected] = useState('');
  if (error && !data) return <LoadError error={error} />;
  if (!data) return <Loading />;
  const panel = selected ? <TaskPanel taskId={selected} onClose={() => setSelected('')} /> : null;
  return (
    <Drawer isExpanded={!!selected} isInline>
      <DrawerContent panelContent={panel ?? <DrawerPanelContent />}>
        <DrawerContentBody>
          {data.length === 0 ? (
            <Empty title="No tasks">Every change (create, clone, resize, snapshot, delete, attach) runs as a task.</Empty>
          ) : (
            <Table aria-label="Tasks" variant="compact">
              <Thead>
                <Tr>
                  <Th>Started</Th>
                  <Th>Kind</Th>
                  <Th>State</Th>
                  <Th>Step</Th>
                  <Th>Progress</Th>
                </Tr>
              </Thead>
              <Tbody>
                {data.map((t) => {
                  const pct = percent(t);
                  return (
                    <Tr key={t.id} isClickable isRowSelected={t.id === selected} onRowClick={() => setSelected(t.id)} data-testid={`task-${t.id}`}>
                      <Td>{formatTime(t.createdUnixSeconds)}</Td>
                      <Td>{t.kind}</Td>
                      <Td>{taskState(t.state)}</Td>
                      <Td>{t.step}</Td>
                      <Td style={{ minWidth: '10rem' }}>{pct !== null ? <Progress value={pct} aria-label={`progress of ${t.id}`} size="sm" /> : ''}</Td>
                    </Tr>
                  );
                })}
              </Tbody>
            </Table>
          )}
        </DrawerContentBody>
      </DrawerContent>
    </Drawer>
  );
}

/** One task, live from WatchTask, with its cancel button. */
function TaskPanel({ taskId, onClose }: { taskId: string; onClose: () => void }) {
  const { api, canWrite } = useSession();
  const [task, setTask] = useState<Task | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    const abort = new AbortController();
    setTask(null);
    (async () => {
      try {
        for await (const t of api.tasks.watchTask({ taskId }, { signal: abort.signal })) setTask(t);
      } catch (e) {
        if (!abort.signal.aborted) setError(errorText(e));
      }
    })();
    return () => abort.abort();
  }, [api, taskId]);
  const pct = task ? percent(task) : null;
  return (
    <DrawerPanelContent widths={{ default: 'width_50' }}>
      <DrawerHead>
        <Title headingLevel="h3">Task {taskId}</Title>
        <DrawerActions>
          <DrawerCloseButton onClick={onClose} />
        </DrawerActions>
      </DrawerHead>
      <div style={{ padding: '0 1.5rem 1.5rem' }} data-testid="task-panel">
        {error && <Alert variant="danger" isInline title={error} />}
        {!task ? (
          !error && <Loading />
        ) : (
          <>
            <DescriptionList isCompact>
              <DescriptionListGroup>
                <DescriptionListTerm>Kind</DescriptionListTerm>
                <DescriptionListDescription>{task.kind}</DescriptionListDescription>
              </DescriptionListGroup>
              <DescriptionListGroup>
                <DescriptionListTerm>State</DescriptionListTerm>
                <DescriptionListDescription data-testid="task-state">{taskState(task.state)}</DescriptionListDescription>
              </DescriptionListGroup>
              <DescriptionListGroup>
                <DescriptionListTerm>Step</DescriptionListTerm>
                <DescriptionListDescription>{task.step}</DescriptionListDescription>
              </DescriptionListGroup>
              {task.state === TaskState.FAILED && (
                <DescriptionListGroup>
                  <DescriptionListTerm>Error</DescriptionListTerm>
                  <DescriptionListDescription data-testid="task-error">
                    {Code[task.errorCode] ?? task.errorCode}: {task.error}
                  </DescriptionListDescription>
                </DescriptionListGroup>
              )}
            </DescriptionList>
            {pct !== null && (
              <Progress
                id="task-progress"
                value={pct}
                title={task.progress?.phase || 'progress'}
                label={`${formatBytes(task.progress!.doneBytes)} of ${formatBytes(task.progress!.totalBytes)}`}
              />
            )}
            {canWrite && task.state === TaskState.RUNNING && (
              <Button
                variant="danger"
                onClick={() => api.tasks.cancelTask({ taskId }).catch((e) => setError(errorText(e)))}
                style={{ marginTop: '1rem' }}
              >
                Cancel task
              </Button>
            )}
          </>
        )}
      </div>
    </DrawerPanelContent>
  );
}
