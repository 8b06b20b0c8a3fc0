// A form in a modal whose submit starts an API operation and follows its
// task: progress while it runs, the API's (or the task's) error in place,
// closed on success.
import { useState } from 'react';
import { Alert, Button, Form, Modal, ModalBody, ModalFooter, ModalHeader, Progress } from '@patternfly/react-core';
import type { Progress as TaskProgress } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText } from '../api';
import { followTask, TaskFailed } from '../tasks';
import { useSession } from '../session';

export function OperationModal(p: {
  title: string;
  submitLabel: string;
  danger?: boolean;
  isValid?: boolean;
  /** Starts the operation; returns its task id (empty: done at once). */
  start: () => Promise<string>;
  onDone: () => void;
  onClose: () => void;
  children?: React.ReactNode;
}) {
  const { api } = useSession();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const [progress, setProgress] = useState<TaskProgress | null>(null);
  const [step, setStep] = useState('');
  const submit = async () => {
    setBusy(true);
    setError('');
    try {
      const taskId = await p.start();
      if (taskId) await followTask(api, taskId, setProgress, (t) => setStep(t.step));
      p.onDone();
    } catch (e) {
      setError(e instanceof TaskFailed ? e.message : errorText(e));
      setBusy(false);
    }
  };
  const pct = progress && progress.totalBytes > 0n ? Number((progress.doneBytes * 100n) / progress.totalBytes) : null;
  return (
    <Modal isOpen onClose={p.onClose} variant="medium" aria-label={p.title}>
      <ModalHeader title={p.title} />
      <ModalBody>
        <Form
          id="operation-form"
          onSubmit={(e) => {
            e.preventDefault();
            if (!busy && p.isValid !== false) void submit();
          }}
        >
          {p.children}
        </Form>
        {busy && step && <div data-testid="operation-step">Working: {step}</div>}
        {busy && pct !== null && <Progress value={pct} title={progress?.phase || 'working'} aria-label="operation progress" />}
        {error && (
          <Alert variant="danger" isInline title="Refused" data-testid="operation-error">
            {error}
          </Alert>
        )}
      </ModalBody>
      <ModalFooter>
        <Button type="submit" form="operation-form" variant={p.danger ? 'danger' : 'primary'} isDisabled={busy || p.isValid === false}>
          {p.submitLabel}
        </Button>
        <Button variant="link" onClick={p.onClose}>
          {busy ? 'Leave it running' : 'Cancel'}
        </Button>
      </ModalFooter>
    </Modal>
  );
}
