import { useCallback, useEffect, useState } from 'react';
import {
  Button,
  Checkbox,
  Dropdown,
  DropdownItem,
  DropdownList,
  FormGroup,
  FormSelect,
  FormSelectOption,
  MenuToggle,
  Pagination,
  Radio,
  TextInput,
  Toolbar,
  ToolbarContent,
  ToolbarItem,
} from '@patternfly/react-core';
import { Table, Tbody, Td, Th, Thead, Tr } from '@patternfly/react-table';
import type { Pool, Volume } from '../gen/limiquantix/storage/v1/control_pb';
import { VolumeOrder, VolumeState } from '../gen/limiquantix/storage/v1/control_pb';
import { CloneMode, ImageFormat, Provisioning, VolumeFormat } from '../gen/limiquantix/storage/v1/types_pb';
import { formatBytes, volumeFormat, volumeState } from '../api';
import { useSession } from '../session';
import { Empty, LoadError, Loading, useLoad } from '../components/common';
import { OperationModal } from '../components/OperationModal';
import { SizeInput } from '../components/SizeInput';
import { Snapshots } from './Snapshots';
import { absolutePathError, nameError } from '../validate';

const PAGE_SIZE = 20;

/** The table's sortable columns (by index) and the server-side order of each. */
const SORTABLE: Partial<Record<number, VolumeOrder>> = {
  0: VolumeOrder.NAME,
  1: VolumeOrder.POOL,
  2: VolumeOrder.STATE,
  3: VolumeOrder.SIZE,
};

function hashParam(name: string): string {
  const q = window.location.hash.split('?')[1] ?? '';
  return new URLSearchParams(q).get(name) ?? '';
}

type VolumeActionKind = 'clone' | 'resize' | 'move' | 'delete' | 'snapshots' | 'attach' | 'detach';
type Action = { kind: 'create' | 'import' } | { kind: VolumeActionKind; volume: Volume };

export function Volumes() {
  const { api, canWrite } = useSession();
  const [pool, setPool] = useState(hashParam('pool'));
  const [state, setState] = useState<VolumeState>(VolumeState.UNSPECIFIED);
  const [prefix, setPrefix] = useState('');
  // Server-side sort: a column index of SORTABLE (none: the store's order).
  const [sortBy, setSortBy] = useState<{ index: number; direction: 'asc' | 'desc' } | null>(null);
  // Server-side paging: the token of each page seen, to go back.
  const [tokens, setTokens] = useState<string[]>(['']);
  const [page, setPage] = useState(0);
  const [action, setAction] = useState<Action | null>(null);
  const pools = useLoad(useCallback(async () => (await api.pools.listPools({})).pools, [api]), 10000);

  useEffect(() => {
    setTokens(['']);
    setPage(0);
  }, [pool, state, prefix]);

  const load = useCallback(
    () =>
      api.volumes.listVolumes({
        pool,
        state,
        namePrefix: prefix,
        pageSize: PAGE_SIZE,
        pageToken: tokens[page] ?? '',
        orderBy: sortBy ? SORTABLE[sortBy.index] : VolumeOrder.UNSPECIFIED,
        descending: sortBy?.direction === 'desc',
      }),
    [api, pool, state, prefix, tokens, page, sortBy],
  );
  const sortable = (index: number) => ({
    sortBy: sortBy ?? {},
    // A page token belongs to one order: start again from the first page, in the same render.
    onSort: (_e: unknown, i: number, direction: 'asc' | 'desc') => {
      setSortBy({ index: i, direction });
      setTokens(['']);
      setPage(0);
    },
    columnIndex: index,
  });
  const { data, error, reload } = useLoad(load);
  const poolName = (id: string) => pools.data?.find((p) => p.id === id)?.name ?? id;
  const done = () => {
    setAction(null);
    reload();
  };

  const next = data?.nextPageToken ?? '';
  const count = page * PAGE_SIZE + (data?.volumes.length ?? 0) + (next ? 1 : 0);
  return (
    <>
      <Toolbar>
        <ToolbarContent>
          <ToolbarItem>
            <FormSelect aria-label="Pool filter" id="filter-pool" value={pool} onChange={(_e, v) => setPool(v)}>
              <FormSelectOption value="" label="All pools" />
              {pools.data?.map((p) => <FormSelectOption key={p.id} value={p.name} label={p.name} />)}
            </FormSelect>
          </ToolbarItem>
          <ToolbarItem>
            <FormSelect aria-label="State filter" id="filter-state" value={state} onChange={(_e, v) => setState(Number(v))}>
              <FormSelectOption value={VolumeState.UNSPECIFIED} label="Any state" />
              {Object.values(VolumeState)
                .filter((v): v is VolumeState => typeof v === 'number' && v !== VolumeState.UNSPECIFIED)
                .map((v) => <FormSelectOption key={v} value={v} label={volumeState(v)} />)}
            </FormSelect>
          </ToolbarItem>
          <ToolbarItem>
            <TextInput aria-label="Name filter" id="filter-name" placeholder="Name starts with" value={prefix} onChange={(_e, v) => setPrefix(v)} />
          </ToolbarItem>
          {canWrite && (
            <ToolbarItem>
              <Button onClick={() => setAction({ kind: 'create' })}>Create volume</Button>{' '}
              <Button variant="secondary" onClick={() => setAction({ kind: 'import' })}>
                Import image
              </Button>
            </ToolbarItem>
          )}
          <ToolbarItem variant="pagination" align={{ default: 'alignEnd' }}>
            <Pagination
              itemCount={count}
              perPage={PAGE_SIZE}
              page={page + 1}
              perPageOptions={[{ title: String(PAGE_SIZE), value: PAGE_SIZE }]}
              toggleTemplate={() => <>page {page + 1}</>}
              onSetPage={(_e, p) => {
                const want = p - 1;
                if (want === page + 1 && next) {
                  setTokens((t) => [...t.slice(0, page + 1), next]);
                  setPage(want);
                } else if (want < page) {
                  setPage(want);
                }
              }}
            />
          </ToolbarItem>
        </ToolbarContent>
      </Toolbar>
      {error && !data && <LoadError error={error} />}
      {!data ? (
        !error && <Loading />
      ) : data.volumes.length === 0 ? (
        <Empty title="No volumes">{pool || prefix || state ? 'Nothing matches the filters.' : 'Create one, clone one or import an image.'}</Empty>
      ) : (
        <Table aria-label="Volumes" variant="compact">
          <Thead>
            <Tr>
              <Th sort={sortable(0)}>Name</Th>
              <Th sort={sortable(1)}>Pool</Th>
              <Th sort={sortable(2)}>State</Th>
              <Th sort={sortable(3)}>Size</Th>
              <Th>Allocated</Th>
              <Th>Format</Th>
              <Th>Based on</Th>
              <Th>Attached to</Th>
              <Th>Snapshots</Th>
              {canWrite && <Th screenReaderText="Actions" />}
            </Tr>
          </Thead>
          <Tbody>
            {data.volumes.map((v) => (
              <Tr key={v.id} data-testid={`volume-${v.name}`}>
                <Td dataLabel="Name">
                  {v.name}
                  {v.template && ' (template)'}
                </Td>
                <Td dataLabel="Pool">{poolName(v.poolId)}</Td>
                <Td dataLabel="State">
                  {volumeState(v.state)}
                  {v.message && <div className="pf-v6-u-font-size-sm">{v.message}</div>}
                </Td>
                <Td dataLabel="Size">{formatBytes(v.sizeBytes)}</Td>
                <Td dataLabel="Allocated">{formatBytes(v.allocatedBytes)}</Td>
                <Td dataLabel="Format">{volumeFormat(v.format)}</Td>
                <Td dataLabel="Based on">{v.backingVolumeId ? data.volumes.find((b) => b.id === v.backingVolumeId)?.name ?? v.backingVolumeId : ''}</Td>
                <Td dataLabel="Attached to">{v.attachment?.vm ?? ''}</Td>
                <Td dataLabel="Snapshots">{String(v.snapshotCount)}</Td>
                {canWrite && (
                  <Td dataLabel="Actions" isActionCell>
                    <VolumeActions volume={v} onAction={setAction} />
                  </Td>
                )}
              </Tr>
            ))}
          </Tbody>
        </Table>
      )}
      {action?.kind === 'create' && <CreateVolume pools={pools.data ?? []} defaultPool={pool} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'clone' && <CloneVolume volume={action.volume} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'resize' && <ResizeVolume volume={action.volume} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'move' && <MoveVolume volume={action.volume} pools={pools.data ?? []} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'delete' && <DeleteVolume volume={action.volume} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'snapshots' && <Snapshots volume={action.volume} onClose={done} />}
      {action?.kind === 'attach' && <AttachVolume volume={action.volume} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'detach' && <DetachVolume volume={action.volume} onDone={done} onClose={() => setAction(null)} />}
      {action?.kind === 'import' && <ImportVolume pools={pools.data ?? []} defaultPool={pool} onDone={done} onClose={() => setAction(null)} />}
    </>
  );
}

function VolumeActions({ volume, onAction }: { volume: Volume; onAction: (a: Action) => void }) {
  const [open, setOpen] = useState(false);
  const pick = (kind: VolumeActionKind) => () => {
    setOpen(false);
    onAction({ kind, volume });
  };
  return (
    <Dropdown
      isOpen={open}
      onOpenChange={setOpen}
      popperProps={{ position: 'right' }}
      toggle={(ref) => (
        <MenuToggle ref={ref} variant="plain" aria-label={`Actions for ${volume.name}`} onClick={() => setOpen(!open)}>
          ⋮
        </MenuToggle>
      )}
    >
      <DropdownList>
        <DropdownItem onClick={pick('clone')}>Clone</DropdownItem>
        <DropdownItem onClick={pick('resize')}>Resize</DropdownItem>
        <DropdownItem onClick={pick('move')}>Move to another pool</DropdownItem>
        <DropdownItem onClick={pick('snapshots')}>Snapshots</DropdownItem>
        {volume.attachment ? (
          <DropdownItem onClick={pick('detach')}>Detach from {volume.attachment.vm}</DropdownItem>
        ) : (
          <DropdownItem onClick={pick('attach')}>Attach to a VM</DropdownItem>
        )}
        <DropdownItem onClick={pick('delete')}>Delete</DropdownItem>
      </DropdownList>
    </Dropdown>
  );
}

function CreateVolume({ pools, defaultPool, onDone, onClose }: { pools: Pool[]; defaultPool: string; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const [pool, setPool] = useState(defaultPool || pools[0]?.name || '');
  const [name, setName] = useState('');
  const [size, setSize] = useState<bigint | null>(null);
  const [format, setFormat] = useState(VolumeFormat.UNSPECIFIED);
  const [thick, setThick] = useState(false);
  const [fromSnapshot, setFromSnapshot] = useState('');
  const nameErr = name ? nameError('volume', name) : '';
  const snapshotSource = fromSnapshot.includes('@') ? fromSnapshot.split('@') : null;
  const valid = !!pool && !!name && !nameErr && (size !== null || !!snapshotSource) && (!fromSnapshot || !!snapshotSource);
  return (
    <OperationModal
      title="Create volume"
      submitLabel="Create"
      isValid={valid}
      onClose={onClose}
      onDone={onDone}
      start={async () => {
        let source = undefined;
        if (snapshotSource) {
          const [vol, snap] = snapshotSource;
          const found = (await api.volumes.listVolumes({ namePrefix: vol, pageSize: 1000 })).volumes.find((v) => v.name === vol || v.id === vol);
          source = { source: { case: 'snapshot' as const, value: { volumeId: found?.id ?? vol, snapshotName: snap } } };
        }
        const op = await api.volumes.createVolume({
          pool,
          name,
          spec: { sizeBytes: size ?? 0n, format, provisioning: thick ? Provisioning.THICK : Provisioning.UNSPECIFIED },
          source,
        });
        return op.taskId;
      }}
    >
      <FormGroup label="Pool" fieldId="create-pool">
        <FormSelect id="create-pool" value={pool} onChange={(_e, v) => setPool(v)}>
          {pools.map((p) => <FormSelectOption key={p.id} value={p.name} label={p.name} />)}
        </FormSelect>
      </FormGroup>
      <FormGroup label="Name" fieldId="create-name">
        <TextInput id="create-name" value={name} onChange={(_e, v) => setName(v)} validated={nameErr ? 'error' : 'default'} />
        {nameErr && <div className="pf-v6-u-danger-color-100">{nameErr}</div>}
      </FormGroup>
      <SizeInput id="create-size" label="Size" onChange={setSize} />
      <FormGroup label="Format" fieldId="create-format">
        <FormSelect id="create-format" value={format} onChange={(_e, v) => setFormat(Number(v))}>
          <FormSelectOption value={VolumeFormat.UNSPECIFIED} label="The pool's default" />
          <FormSelectOption value={VolumeFormat.QCOW2} label="qcow2" />
          <FormSelectOption value={VolumeFormat.RAW} label="raw" />
        </FormSelect>
      </FormGroup>
      <FormGroup label="Provisioning" role="radiogroup" fieldId="create-thin" isInline>
        <Radio id="create-thin" name="prov" label="Thin (the pool's default)" isChecked={!thick} onChange={() => setThick(false)} />
        <Radio id="create-thick" name="prov" label="Thick" isChecked={thick} onChange={() => setThick(true)} />
      </FormGroup>
      <FormGroup label="From a snapshot (VOLUME@SNAPSHOT, optional)" fieldId="create-from">
        <TextInput id="create-from" value={fromSnapshot} onChange={(_e, v) => setFromSnapshot(v)} />
      </FormGroup>
    </OperationModal>
  );
}

function CloneVolume({ volume, onDone, onClose }: { volume: Volume; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const [name, setName] = useState(`${volume.name}-clone`);
  const [full, setFull] = useState(false);
  const nameErr = nameError('volume', name);
  return (
    <OperationModal
      title={`Clone ${volume.name}`}
      submitLabel="Clone"
      isValid={!nameErr}
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.cloneVolume({ sourceVolumeId: volume.id, name, mode: full ? CloneMode.FULL : CloneMode.LINKED })).taskId}
    >
      <FormGroup label="Name" fieldId="clone-name">
        <TextInput id="clone-name" value={name} onChange={(_e, v) => setName(v)} validated={nameErr ? 'error' : 'default'} />
      </FormGroup>
      <FormGroup label="Kind of clone" role="radiogroup" fieldId="clone-linked" isStack>
        <Radio id="clone-linked" name="mode" label="Linked (copy-on-write, instant; the source becomes its base)" isChecked={!full} onChange={() => setFull(false)} />
        <Radio id="clone-full" name="mode" label="Full (an independent copy of every byte)" isChecked={full} onChange={() => setFull(true)} />
      </FormGroup>
    </OperationModal>
  );
}

function ResizeVolume({ volume, onDone, onClose }: { volume: Volume; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const [size, setSize] = useState<bigint | null>(null);
  const grows = size !== null && size > volume.sizeBytes;
  return (
    <OperationModal
      title={`Resize ${volume.name}`}
      submitLabel="Grow"
      isValid={grows}
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.resizeVolume({ volumeId: volume.id, newSizeBytes: size! })).taskId}
    >
      <p>Now {formatBytes(volume.sizeBytes)}. Volumes only grow.</p>
      <SizeInput id="resize-size" label="New size" min={volume.sizeBytes + 1n} onChange={setSize} />
    </OperationModal>
  );
}

function MoveVolume({ volume, pools, onDone, onClose }: { volume: Volume; pools: Pool[]; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const others = pools.filter((p) => p.id !== volume.poolId);
  const [pool, setPool] = useState(others[0]?.name ?? '');
  const [dropSnapshots, setDropSnapshots] = useState(false);
  const snapshots = volume.snapshotCount > 0n;
  return (
    <OperationModal
      title={`Move ${volume.name}`}
      submitLabel="Move"
      isValid={!!pool}
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.moveVolume({ volumeId: volume.id, pool, dropSnapshots })).taskId}
    >
      <p>
        The volume is copied into the other pool, checked, then its old copy is deleted; it keeps its name and id. A linked clone arrives as an
        independent volume. A pool of another node pulls it from this one over an encrypted link made for this move only. An attached
        volume moves while its VM runs (to a pool of the VM's node): the VM switches to the copy when it is complete.
      </p>
      <FormGroup label="Target pool" fieldId="move-pool">
        <FormSelect id="move-pool" value={pool} onChange={(_e, v) => setPool(v)}>
          {others.map((p) => <FormSelectOption key={p.id} value={p.name} label={p.name} />)}
        </FormSelect>
      </FormGroup>
      {snapshots && (
        <Checkbox
          id="move-drop-snapshots"
          label={`Delete its ${String(volume.snapshotCount)} snapshot(s) (they move with it only between local pools of its node)`}
          isChecked={dropSnapshots}
          onChange={(_e, v) => setDropSnapshots(v)}
        />
      )}
    </OperationModal>
  );
}

function DeleteVolume({ volume, onDone, onClose }: { volume: Volume; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  return (
    <OperationModal
      title={`Delete ${volume.name}?`}
      submitLabel="Delete"
      danger
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.deleteVolume({ volumeId: volume.id })).taskId}
    >
      <p>
        The volume and its {String(volume.snapshotCount)} snapshot(s) are deleted. A volume that linked clones depend on is refused, naming
        them.
      </p>
    </OperationModal>
  );
}



function AttachVolume({ volume, onDone, onClose }: { volume: Volume; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const [vm, setVm] = useState('');
  const [readOnly, setReadOnly] = useState(volume.template);
  return (
    <OperationModal
      title={`Attach ${volume.name} to a VM`}
      submitLabel="Attach"
      isValid={vm.trim() !== ''}
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.attachVolume({ volumeId: volume.id, vm: vm.trim(), readOnly })).taskId}
    >
      <FormGroup label="VM (its libvirt domain name, running)" fieldId="attach-vm">
        <TextInput id="attach-vm" value={vm} onChange={(_e, v) => setVm(v)} />
      </FormGroup>
      <FormGroup label="Access" role="radiogroup" fieldId="attach-rw" isInline>
        <Radio id="attach-rw" name="access" label="Read-write" isChecked={!readOnly} onChange={() => setReadOnly(false)} />
        <Radio id="attach-ro" name="access" label="Read-only" isChecked={readOnly} onChange={() => setReadOnly(true)} />
      </FormGroup>
    </OperationModal>
  );
}

function DetachVolume({ volume, onDone, onClose }: { volume: Volume; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  return (
    <OperationModal
      title={`Detach ${volume.name} from ${volume.attachment?.vm ?? 'its VM'}?`}
      submitLabel="Detach"
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.detachVolume({ volumeId: volume.id })).taskId}
    >
      <p>The guest is asked to release the disk; the volume stays.</p>
    </OperationModal>
  );
}

const IMAGE_FORMATS: [ImageFormat, string][] = [
  [ImageFormat.QCOW2, 'qcow2'],
  [ImageFormat.RAW, 'raw'],
  [ImageFormat.VMDK, 'vmdk'],
  [ImageFormat.VHDX, 'vhdx'],
  [ImageFormat.VDI, 'vdi'],
];

function ImportVolume({ pools, defaultPool, onDone, onClose }: { pools: Pool[]; defaultPool: string; onDone: () => void; onClose: () => void }) {
  const { api } = useSession();
  const [pool, setPool] = useState(defaultPool || pools[0]?.name || '');
  const [name, setName] = useState('');
  const [path, setPath] = useState('');
  const [format, setFormat] = useState(ImageFormat.QCOW2);
  const nameErr = name ? nameError('volume', name) : '';
  const pathErr = path ? absolutePathError(path) : '';
  const node = pools.find((p) => p.name === pool)?.nodeIds[0] ?? '';
  return (
    <OperationModal
      title="Import an image"
      submitLabel="Import"
      isValid={!!pool && !!name && !nameErr && !!path && !pathErr}
      onClose={onClose}
      onDone={onDone}
      start={async () => (await api.volumes.importVolume({ pool, name, path, format, nodeId: node })).taskId}
    >
      <FormGroup label="Pool" fieldId="import-pool">
        <FormSelect id="import-pool" value={pool} onChange={(_e, v) => setPool(v)}>
          {pools.map((p) => <FormSelectOption key={p.id} value={p.name} label={p.name} />)}
        </FormSelect>
      </FormGroup>
      <FormGroup label="Name" fieldId="import-name">
        <TextInput id="import-name" value={name} onChange={(_e, v) => setName(v)} validated={nameErr ? 'error' : 'default'} />
      </FormGroup>
      <FormGroup label="Image file on the node (in its import directory)" fieldId="import-path">
        <TextInput id="import-path" value={path} onChange={(_e, v) => setPath(v)} validated={pathErr ? 'error' : 'default'} />
      </FormGroup>
      <FormGroup label="Image format (checked against its content)" fieldId="import-format">
        <FormSelect id="import-format" value={format} onChange={(_e, v) => setFormat(Number(v))}>
          {IMAGE_FORMATS.map(([f, label]) => <FormSelectOption key={f} value={f} label={label} />)}
        </FormSelect>
      </FormGroup>
    </OperationModal>
  );
}
