import { useCallback, useState } from 'react';
import { Button, Label, LabelGroup, Modal, ModalBody, ModalFooter, ModalHeader, Alert, Tooltip, Toolbar, ToolbarContent, ToolbarItem } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import type { Pool } from '../gen/limiquantix/storage/v1/control_pb';
import { PoolPhase } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText, poolKind, poolPhase, poolState } from '../api';
import { useSession } from '../session';
import { CapacityBar, Empty, LoadError, Loading, useLoad } from '../components/common';
import { CreatePoolWizard } from './CreatePool';

/** Where the pool's storage is, from its config. */
function location(p: Pool): string {
  const b = p.config?.backend;
  switch (b?.case) {
    case 'local':
      return b.value.path;
    case 'nfs':
      return `${b.value.server}:${b.value.exportPath}`;
    case 'ceph':
      return `${b.value.cephPool} @ ${b.value.monitors.join(',')}`;
    case 'iscsi':
      return `${b.value.targetIqn} @ ${b.value.portal}`;
    default:
      return '';
  }
}

export function Pools() {
  const { api, canWrite } = useSession();
  const load = useCallback(async () => (await api.pools.listPools({})).pools, [api]);
  const { data, error, reload } = useLoad(load);
  const [creating, setCreating] = useState(false);
  const [deleting, setDeleting] = useState<Pool | null>(null);
  if (error && !data) return <LoadError error={error} />;
  if (!data) return <Loading />;
  return (
    <>
      {canWrite && (
        <Toolbar>
          <ToolbarContent>
            <ToolbarItem>
              <Button onClick={() => setCreating(true)}>Create pool</Button>
            </ToolbarItem>
          </ToolbarContent>
        </Toolbar>
      )}
      {error && <LoadError error={error} />}
      {data.length === 0 ? (
        <Empty title="No pools">A pool is a datastore: a local directory, an NFS export, a Ceph pool or an iSCSI target.</Empty>
      ) : (
        <Table aria-label="Pools" variant="compact">
          <Thead>
            <Tr>
              <Th>Name</Th>
              <Th>Kind</Th>
              <Th>Location</Th>
              <Th>State</Th>
              <Th>Nodes</Th>
              <Th>Capacity</Th>
              <Th>Labels</Th>
              {canWrite && <Th screenReaderText="Actions" />}
            </Tr>
          </Thead>
          <Tbody>
            {data.map((p) => {
              const ready = p.nodes.filter((n) => n.phase === PoolPhase.READY).length;
              const detail = p.nodes.map((n) => `${n.nodeId}: ${poolPhase(n.phase)}${n.message ? ` — ${n.message}` : ''}`).join('\n');
              const cap = p.capacity;
              return (
                <Tr key={p.id} data-testid={`pool-${p.name}`}>
                  <Td dataLabel="Name">
                    <a href={`#/volumes?pool=${encodeURIComponent(p.name)}`}>{p.name}</a>
                  </Td>
                  <Td dataLabel="Kind">{poolKind(p.kind)}</Td>
                  <Td dataLabel="Location">{location(p)}</Td>
                  <Td dataLabel="State">
                    {poolState(p.state)}
                    {p.message && <div className="pf-v6-u-font-size-sm">{p.message}</div>}
                  </Td>
                  <Td dataLabel="Nodes">
                    <Tooltip content={<pre style={{ whiteSpace: 'pre-wrap' }}>{detail || 'no node yet'}</pre>}>
                      <span tabIndex={0}>
                        {ready}/{p.nodes.length} ready
                      </span>
                    </Tooltip>
                  </Td>
                  <Td dataLabel="Capacity" style={{ minWidth: '14rem' }}>
                    {cap ? <CapacityBar label={`${p.name} used`} used={cap.totalBytes - cap.freeBytes} total={cap.totalBytes} /> : '—'}
                  </Td>
                  <Td dataLabel="Labels">
                    <LabelGroup>
                      {Object.entries(p.labels).map(([k, v]) => (
                        <Label key={k}>
                          {k}={v}
                        </Label>
                      ))}
                    </LabelGroup>
                  </Td>
                  {canWrite && (
                    <Td dataLabel="Actions">
                      <Button variant="link" isDanger onClick={() => setDeleting(p)}>
                        Delete
                      </Button>
                    </Td>
                  )}
                </Tr>
              );
            })}
          </Tbody>
        </Table>
      )}
      {creating && (
        <CreatePoolWizard
          onClose={() => {
            setCreating(false);
            reload();
          }}
        />
      )}
      {deleting && (
        <DeletePool
          pool={deleting}
          onClose={() => {
            setDeleting(null);
            reload();
          }}
        />
      )}
    </>
  );
}

function DeletePool({ pool, onClose }: { pool: Pool; onClose: () => void }) {
  const { api } = useSession();
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <Modal isOpen onClose={onClose} variant="small" aria-label="Delete pool">
      <ModalHeader title={`Delete pool ${pool.name}?`} />
      <ModalBody>
        The nodes forget the pool; a pool that still holds volumes is refused.
        {error && <Alert variant="danger" isInline title={error} />}
      </ModalBody>
      <ModalFooter>
        <Button
          variant="danger"
          isDisabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await api.pools.deletePool({ pool: pool.id });
              onClose();
            } catch (e) {
              setError(errorText(e));
              setBusy(false);
            }
          }}
        >
          Delete
        </Button>
        <Button variant="link" onClick={onClose}>
          Cancel
        </Button>
      </ModalFooter>
    </Modal>
  );
}
