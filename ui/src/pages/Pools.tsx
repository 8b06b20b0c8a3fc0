import { useCallback, useState } from 'react';
import { Button, Label, LabelGroup, Modal, ModalBody, ModalFooter, ModalHeader, Alert, Tooltip, Toolbar, ToolbarContent, ToolbarItem } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import type { Pool } from '../gen/limiquantix/storage/v1/control_pb';
import { PoolPhase } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText, poolKind, poolPhase, poolState } from '../api';
import { useSession } from '../session';
import { CapacityBar, Empty, LoadError, Loading, useLoad } from '../components/common';
import { CapacityChart } from '../components/CapacityChart';
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
      return `${b.value.targetIqn} @ ${b.value.portals.join(', ')}`;
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
  const [detail, setDetail] = useState<Pool | null>(null);
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
                    <Button variant="link" isInline onClick={() => setDetail(p)}>
                      {p.name}
                    </Button>
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
      {detail && <PoolDetail pool={detail} onClose={() => setDetail(null)} />}
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

/** One pool: what it can do, each node's view of it, capacity and volumes by state. */
function PoolDetail({ pool, onClose }: { pool: Pool; onClose: () => void }) {
  const { api } = useSession();
  const load = useCallback(() => api.pools.getPoolMetrics({ pool: pool.id }), [api, pool.id]);
  // Kept current while open: capacity and its history move.
  const { data, error } = useLoad(load, 5000);
  const caps = pool.capabilities;
  const yes = (b: boolean | undefined) => (b ? 'yes' : 'no');
  return (
    <Modal isOpen onClose={onClose} variant="large" aria-label={`Pool ${pool.name}`}>
      <ModalHeader title={`Pool ${pool.name}`} description={`${poolKind(pool.kind)}, ${location(pool)}`} />
      <ModalBody>
        {error && <LoadError error={error} />}
        {!data ? (
          !error && <Loading />
        ) : (
          <>
            {data.capacity && (
              <CapacityBar label="Used on its storage" used={data.capacity.totalBytes - data.capacity.freeBytes} total={data.capacity.totalBytes} />
            )}
            <CapacityBar label={`Provisioned, of the limit (overcommit ${pool.overcommitRatio || 1}×)`} used={data.provisionedBytes} total={data.provisioningLimitBytes} />
            <CapacityChart samples={data.history} />
            <p data-testid="pool-volume-count">
              {String(data.volumeCount)} volume(s)
              {Object.entries(data.volumesByState).map(([state, n]) => `, ${String(n)} ${state.toLowerCase().replace('volume_state_', '')}`)}
              {' — '}
              <a href={`#/volumes?pool=${encodeURIComponent(pool.name)}`} onClick={onClose}>
                show them
              </a>
            </p>
            <p data-testid="pool-capabilities">
              Shared: {yes(caps?.shared)}; thin: {yes(caps?.thinProvisioning)}; linked clones: {yes(caps?.linkedClone)}; snapshots: {yes(caps?.snapshots)}; grows live:{' '}
              {yes(caps?.liveResize)}
              {caps?.arrayManaged && '; volumes are the storage array\'s own'}
            </p>
            <Table aria-label="Nodes of the pool" variant="compact">
              <Thead>
                <Tr>
                  <Th>Node</Th>
                  <Th>Phase</Th>
                  <Th>Message</Th>
                </Tr>
              </Thead>
              <Tbody>
                {data.nodes.map((n) => (
                  <Tr key={n.nodeId} data-testid={`pool-node-${n.nodeId}`}>
                    <Td>{n.nodeId}</Td>
                    <Td>{poolPhase(n.phase)}</Td>
                    <Td>{n.message}</Td>
                  </Tr>
                ))}
              </Tbody>
            </Table>
          </>
        )}
      </ModalBody>
    </Modal>
  );
}
