import { useCallback, useState } from 'react';
import { Alert, Button, Checkbox, Form, FormGroup, Modal, ModalBody, ModalFooter, ModalHeader, Split, SplitItem, TextInput } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import { VolumeState, type Snapshot, type Volume } from '../gen/limiquantix/storage/v1/control_pb';
import { Quiesce } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText, formatTime } from '../api';
import { useSession } from '../session';
import { Empty, LoadError, Loading, useLoad } from '../components/common';
import { followTask, TaskFailed } from '../tasks';
import { nameError } from '../validate';

/** How consistent a snapshot is, in words. */
function consistency(s: Snapshot): string {
  if (!s.vm) return 'Taken detached';
  if (s.quiesced) return `Quiesced in ${s.vm} (frozen ${String(s.frozenMs)} ms)`;
  return s.notQuiescedReason ? `Crash-consistent: ${s.notQuiescedReason}` : `Crash-consistent (${s.vm} running)`;
}

/** A volume's snapshots: list, take (quiesced when a VM has it open),
 * revert (confirmed) and delete. */
export function Snapshots({ volume, onClose }: { volume: Volume; onClose: () => void }) {
  const { api } = useSession();
  const load = useCallback(async () => (await api.volumes.listSnapshots({ volumeId: volume.id })).snapshots, [api, volume.id]);
  const { data, error, reload } = useLoad(load, 0);
  const [name, setName] = useState('');
  const [opError, setOpError] = useState('');
  const [busy, setBusy] = useState(false);
  const [confirmRevert, setConfirmRevert] = useState('');
  const running = volume.state === VolumeState.ATTACHED && !volume.attachment?.readOnly;
  const [quiesce, setQuiesce] = useState(running);
  const [bestEffort, setBestEffort] = useState(false);
  const quiesceMode = !running || !quiesce ? Quiesce.NONE : bestEffort ? Quiesce.BEST_EFFORT : Quiesce.REQUIRED;
  const run = async (start: () => Promise<string>) => {
    setBusy(true);
    setOpError('');
    try {
      await followTask(api, await start());
      setName('');
      setConfirmRevert('');
      reload();
    } catch (e) {
      setOpError(e instanceof TaskFailed ? e.message : errorText(e));
    }
    setBusy(false);
  };
  const nameErr = name ? nameError('snapshot', name) : '';
  return (
    <Modal isOpen onClose={onClose} variant="medium" aria-label={`Snapshots of ${volume.name}`}>
      <ModalHeader title={`Snapshots of ${volume.name}`} />
      <ModalBody>
        <Form
          onSubmit={(e) => {
            e.preventDefault();
            if (name && !nameErr) void run(async () => (await api.volumes.createSnapshot({ volumeId: volume.id, name, quiesce: quiesceMode })).taskId);
          }}
        >
          <FormGroup label="New snapshot" fieldId="snapshot-name">
            <Split hasGutter>
              <SplitItem isFilled>
                <TextInput id="snapshot-name" value={name} onChange={(_e, v) => setName(v)} validated={nameErr ? 'error' : 'default'} />
              </SplitItem>
              <SplitItem>
                <Button type="submit" isDisabled={busy || !name || !!nameErr}>
                  Take snapshot
                </Button>
              </SplitItem>
            </Split>
          </FormGroup>
          {running && (
            <FormGroup fieldId="snapshot-quiesce">
              <Checkbox
                id="snapshot-quiesce"
                label={`Quiesce: freeze ${volume.attachment?.vm ?? 'the VM'}'s filesystems through its guest agent`}
                isChecked={quiesce}
                onChange={(_e, v) => setQuiesce(v)}
              />
              {quiesce && (
                <Checkbox
                  id="snapshot-best-effort"
                  label="If the agent does not answer, take it crash-consistent anyway"
                  isChecked={bestEffort}
                  onChange={(_e, v) => setBestEffort(v)}
                />
              )}
            </FormGroup>
          )}
        </Form>
        {opError && <Alert variant="danger" isInline title="Refused" data-testid="snapshot-error">{opError}</Alert>}
        {confirmRevert && (
          <Alert
            variant="warning"
            isInline
            title={`Revert ${volume.name} to ${confirmRevert}? What was written since is lost.`}
            actionLinks={
              <>
                <Button
                  variant="danger"
                  isDisabled={busy}
                  onClick={() => run(async () => (await api.volumes.revertSnapshot({ volumeId: volume.id, name: confirmRevert })).taskId)}
                >
                  Revert now
                </Button>
                <Button variant="link" onClick={() => setConfirmRevert('')}>
                  Cancel
                </Button>
              </>
            }
          />
        )}
        {error && <LoadError error={error} />}
        {!data ? (
          !error && <Loading />
        ) : data.length === 0 ? (
          <Empty title="No snapshots" />
        ) : (
          <Table aria-label="Snapshots" variant="compact">
            <Thead>
              <Tr>
                <Th>Name</Th>
                <Th>Taken</Th>
                <Th>Consistency</Th>
                <Th screenReaderText="Actions" />
              </Tr>
            </Thead>
            <Tbody>
              {data.map((s) => (
                <Tr key={s.name} data-testid={`snapshot-${s.name}`}>
                  <Td>{s.name}</Td>
                  <Td>{formatTime(s.createdUnixSeconds)}</Td>
                  <Td>{consistency(s)}</Td>
                  <Td>
                    <Button variant="link" isDisabled={busy} onClick={() => setConfirmRevert(s.name)}>
                      Revert
                    </Button>
                    <Button
                      variant="link"
                      isDanger
                      isDisabled={busy}
                      onClick={() => run(async () => (await api.volumes.deleteSnapshot({ volumeId: volume.id, name: s.name })).taskId)}
                    >
                      Delete
                    </Button>
                  </Td>
                </Tr>
              ))}
            </Tbody>
          </Table>
        )}
      </ModalBody>
      <ModalFooter>
        <Button variant="primary" onClick={onClose}>
          Done
        </Button>
      </ModalFooter>
    </Modal>
  );
}
