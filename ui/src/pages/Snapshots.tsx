import { useCallback, useState } from 'react';
import { Alert, Button, Form, FormGroup, Modal, ModalBody, ModalFooter, ModalHeader, Split, SplitItem, TextInput } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import type { Volume } from '../gen/limiquantix/storage/v1/control_pb';
import { errorText, formatTime } from '../api';
import { useSession } from '../session';
import { Empty, LoadError, Loading, useLoad } from '../components/common';
import { followTask, TaskFailed } from '../tasks';
import { nameError } from '../validate';

/** A volume's snapshots: list, take, revert (confirmed) and delete. */
export function Snapshots({ volume, onClose }: { volume: Volume; onClose: () => void }) {
  const { api } = useSession();
  const load = useCallback(async () => (await api.volumes.listSnapshots({ volumeId: volume.id })).snapshots, [api, volume.id]);
  const { data, error, reload } = useLoad(load, 0);
  const [name, setName] = useState('');
  const [opError, setOpError] = useState('');
  const [busy, setBusy] = useState(false);
  const [confirmRevert, setConfirmRevert] = useState('');
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
            if (name && !nameErr) void run(async () => (await api.volumes.createSnapshot({ volumeId: volume.id, name })).taskId);
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
                <Th screenReaderText="Actions" />
              </Tr>
            </Thead>
            <Tbody>
              {data.map((s) => (
                <Tr key={s.name} data-testid={`snapshot-${s.name}`}>
                  <Td>{s.name}</Td>
                  <Td>{formatTime(s.createdUnixSeconds)}</Td>
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
