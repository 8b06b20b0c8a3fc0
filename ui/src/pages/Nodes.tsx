import { useCallback, useState } from 'react';
import { Alert, Button } from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import type { PoolKind } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText, formatTime, nodeState, poolKind } from '../api';
import { useSession } from '../session';
import { Empty, LoadError, Loading, useLoad } from '../components/common';

export function Nodes() {
  const { api, canWrite } = useSession();
  const load = useCallback(async () => (await api.nodes.listNodes({})).nodes, [api]);
  const { data, error, reload } = useLoad(load);
  const [opError, setOpError] = useState('');
  if (error && !data) return <LoadError error={error} />;
  if (!data) return <Loading />;
  if (data.length === 0) return <Empty title="No nodes">Start limiquantix-node on a hypervisor with a join token.</Empty>;
  const drain = async (nodeId: string, undo: boolean) => {
    setOpError('');
    try {
      await api.nodes.drainNode({ nodeId, undo });
      reload();
    } catch (e) {
      setOpError(errorText(e));
    }
  };
  return (
    <>
      {opError && <Alert variant="danger" isInline title="Refused">{opError}</Alert>}
      <Table aria-label="Nodes" variant="compact">
        <Thead>
          <Tr>
            <Th>Host</Th>
            <Th>Id</Th>
            <Th>Address</Th>
            <Th>State</Th>
            <Th>Pool kinds</Th>
            <Th>Last heartbeat</Th>
            {canWrite && <Th screenReaderText="Actions" />}
          </Tr>
        </Thead>
        <Tbody>
          {data.map((n) => (
            <Tr key={n.id} data-testid={`node-${n.id}`}>
              <Td>{n.hostname}</Td>
              <Td>{n.id}</Td>
              <Td>{n.address}</Td>
              <Td>
                {nodeState(n.state)}
                {n.draining && ', draining'}
              </Td>
              <Td>{n.supportedKinds.map((k) => poolKind(k.kind as PoolKind)).join(', ')}</Td>
              <Td>{formatTime(n.lastHeartbeatUnixSeconds)}</Td>
              {canWrite && (
                <Td>
                  <Button variant="link" onClick={() => drain(n.id, n.draining)}>
                    {n.draining ? 'End drain' : 'Drain'}
                  </Button>
                </Td>
              )}
            </Tr>
          ))}
        </Tbody>
      </Table>
    </>
  );
}
