import { useCallback } from 'react';
import { Card, CardBody, CardTitle, Gallery, Stack, StackItem } from '@patternfly/react-core';
import { NodeState, PoolState } from '../gen/limiquantix/storage/v1/control_pb';
import { poolState } from '../api';
import { useSession } from '../session';
import { CapacityBar, Empty, LoadError, Loading, useLoad } from '../components/common';

export function Overview() {
  const { api } = useSession();
  const load = useCallback(async () => {
    const [pools, nodes, tasks] = await Promise.all([
      api.pools.listPools({}),
      api.nodes.listNodes({}),
      api.tasks.listTasks({ runningOnly: true, pageSize: 1000 }),
    ]);
    return { pools: pools.pools, nodes: nodes.nodes, running: tasks.tasks.length };
  }, [api]);
  const { data, error } = useLoad(load);
  if (error && !data) return <LoadError error={error} />;
  if (!data) return <Loading />;
  const byState = new Map<string, number>();
  for (const p of data.pools) byState.set(poolState(p.state), (byState.get(poolState(p.state)) ?? 0) + 1);
  const online = data.nodes.filter((n) => n.state === NodeState.ONLINE).length;
  return (
    <Stack hasGutter>
      {error && <LoadError error={error} />}
      <StackItem>
        <Gallery hasGutter minWidths={{ default: '220px' }}>
          <Card id="overview-pools">
            <CardTitle>Pools</CardTitle>
            <CardBody>
              {data.pools.length === 0
                ? 'none yet'
                : [...byState].map(([state, n]) => (
                    <div key={state}>
                      {n} {state}
                    </div>
                  ))}
            </CardBody>
          </Card>
          <Card id="overview-nodes">
            <CardTitle>Nodes</CardTitle>
            <CardBody>
              {online} online, {data.nodes.length - online} offline
            </CardBody>
          </Card>
          <Card id="overview-tasks">
            <CardTitle>Running tasks</CardTitle>
            <CardBody>
              <a href="#/tasks">{data.running}</a>
            </CardBody>
          </Card>
        </Gallery>
      </StackItem>
      <StackItem>
        <Card>
          <CardTitle>Capacity</CardTitle>
          <CardBody>
            {data.pools.length === 0 && <Empty title="No pools">Create one on the Pools page.</Empty>}
            {data.pools.map((p) => {
              const cap = p.capacity;
              const total = cap?.totalBytes ?? 0n;
              const limit = BigInt(Math.floor(Number(total) * (p.overcommitRatio || 1)));
              return (
                <div key={p.id} data-testid={`capacity-${p.name}`} style={{ marginBottom: '1rem' }}>
                  <strong>{p.name}</strong> ({poolState(p.state)})
                  {p.state === PoolState.READY && cap ? (
                    <>
                      <CapacityBar label={`${p.name}: used`} used={total - cap.freeBytes} total={total} />
                      <CapacityBar label={`${p.name}: provisioned of the overcommit limit`} used={p.provisionedBytes} total={limit} />
                    </>
                  ) : (
                    <div>{p.message}</div>
                  )}
                </div>
              );
            })}
          </CardBody>
        </Card>
      </StackItem>
    </Stack>
  );
}
