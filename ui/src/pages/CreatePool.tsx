// Create a pool: a wizard whose kinds are the ones the nodes report, with
// the API's own rules checked as the user types, secrets as write-only
// password fields, and the API's refusal (or the task's) shown in place.
import { useCallback, useEffect, useState } from 'react';
import {
  Alert,
  Checkbox,
  Form,
  FormGroup,
  FormHelperText,
  FormSelect,
  FormSelectOption,
  HelperText,
  HelperTextItem,
  Modal,
  Radio,
  TextInput,
  Wizard,
  WizardHeader,
  WizardStep,
} from '@patternfly/react-core';
import type { Node } from '../gen/limiquantix/storage/v1/control_pb';
import { TaskState } from '../gen/limiquantix/storage/v1/control_pb';
import { IscsiMode, NfsMode, PoolKind } from '../gen/limiquantix/storage/v1/types_pb';
import type { PoolConfig } from '../gen/limiquantix/storage/v1/types_pb';
import type { MessageInitShape } from '@bufbuild/protobuf';
import type { PoolConfigSchema } from '../gen/limiquantix/storage/v1/types_pb';
import { errorText, poolKind } from '../api';
import { useSession } from '../session';
import { absolutePathError, chapSecretError, hostPortError, iqnError, nameError } from '../validate';

type Fields = Record<string, string>;

/** A kind's settings: its fields, their checks, and the config they make. */
interface KindForm {
  fields: { key: string; label: string; secret?: boolean; optional?: boolean; check?: (v: string) => string; hint?: string }[];
  config: (f: Fields, flags: Record<string, boolean>) => MessageInitShape<typeof PoolConfigSchema>;
  flags?: { key: string; label: string }[];
  /** Lives on one node (the user picks it). */
  local?: boolean;
}

const monitorsError = (s: string) => {
  const list = s.split(',').map((m) => m.trim()).filter(Boolean);
  if (list.length === 0) return 'at least one monitor (host:port, comma-separated)';
  return list.map((m) => hostPortError(m)).find((e) => e) ?? '';
};

const commaList = (s: string) => s.split(',').map((m) => m.trim()).filter(Boolean);

const portalsError = (s: string) => {
  const list = commaList(s);
  if (list.length === 0) return 'at least one portal (host[:port], comma-separated)';
  if (list.length > 8) return 'at most 8 portals';
  if (new Set(list).size !== list.length) return 'a portal is given twice';
  return list.map((p) => hostPortError(p)).find((e) => e) ?? '';
};

const FORMS: Partial<Record<PoolKind, KindForm>> = {
  [PoolKind.LOCAL]: {
    local: true,
    fields: [{ key: 'path', label: 'Directory on the node', check: absolutePathError, hint: 'inside the node’s pool roots' }],
    config: (f) => ({ backend: { case: 'local', value: { path: f.path } } }),
  },
  [PoolKind.NFS]: {
    fields: [
      { key: 'server', label: 'NFS server', check: (v) => hostPortError(v) },
      { key: 'exportPath', label: 'Export path', check: absolutePathError },
    ],
    flags: [{ key: 'kernel', label: 'Mount with the kernel client (default: user space, libnfs)' }],
    config: (f, flags) => ({
      backend: { case: 'nfs', value: { server: f.server, exportPath: f.exportPath, mode: flags.kernel ? NfsMode.KERNEL : NfsMode.USERSPACE } },
    }),
  },
  [PoolKind.CEPH]: {
    fields: [
      { key: 'monitors', label: 'Monitors', check: monitorsError, hint: 'host:port, comma-separated' },
      { key: 'cephPool', label: 'Ceph pool', check: (v) => nameError('Ceph pool', v) },
      { key: 'clientId', label: 'Ceph user', check: (v) => (v ? '' : 'required'), hint: 'e.g. libvirt (client.libvirt)' },
      { key: 'key', label: 'Key', secret: true, check: (v) => (v ? '' : 'required') },
    ],
    flags: [{ key: 'createIfMissing', label: 'Create the Ceph pool if it does not exist' }],
    config: (f, flags) => ({
      backend: {
        case: 'ceph',
        value: {
          monitors: commaList(f.monitors),
          cephPool: f.cephPool,
          clientId: f.clientId,
          key: f.key,
          createIfMissing: !!flags.createIfMissing,
        },
      },
    }),
  },
  [PoolKind.ISCSI]: {
    fields: [
      { key: 'portals', label: 'Portals', check: portalsError, hint: 'host[:port], 3260 by default; several comma-separated, tried in order' },
      { key: 'targetIqn', label: 'Target', check: iqnError },
      { key: 'chapUsername', label: 'CHAP user', optional: true },
      { key: 'chapPassword', label: 'CHAP secret', secret: true, optional: true, check: chapSecretError },
      { key: 'mutualChapUsername', label: "LVM mode, mutual CHAP: the target's user", optional: true },
      { key: 'mutualChapPassword', label: "LVM mode, mutual CHAP: the target's secret", secret: true, optional: true, check: chapSecretError },
      { key: 'lun', label: 'LVM mode: the LUN holding the volume group', optional: true, check: (v) => (!v || /^\d+$/.test(v) ? '' : 'a LUN number') },
      { key: 'volumeGroup', label: 'LVM mode: volume group', optional: true, check: (v) => (!v || /^[A-Za-z0-9+_.][A-Za-z0-9+_.-]*$/.test(v) ? '' : 'letters, digits and + _ . -') },
    ],
    flags: [
      { key: 'lvm', label: 'LVM mode (a volume group on one LUN) instead of direct (each LUN is a volume)' },
      { key: 'createVolumeGroup', label: 'LVM mode: create the volume group' },
    ],
    config: (f, flags) => ({
      backend: {
        case: 'iscsi',
        value: {
          portals: commaList(f.portals),
          targetIqn: f.targetIqn,
          chapUsername: f.chapUsername,
          chapPassword: f.chapPassword,
          mutualChapUsername: f.mutualChapUsername,
          mutualChapPassword: f.mutualChapPassword,
          mode: flags.lvm ? IscsiMode.LVM : IscsiMode.DIRECT,
          lun: Number(f.lun || 0),
          volumeGroup: f.volumeGroup,
          createVolumeGroup: !!flags.createVolumeGroup,
        },
      },
    }),
  },
};

export function CreatePoolWizard({ onClose }: { onClose: () => void }) {
  const { api } = useSession();
  const [nodes, setNodes] = useState<Node[]>([]);
  const [kind, setKind] = useState<PoolKind | null>(null);
  const [name, setName] = useState('');
  const [node, setNode] = useState('');
  const [fields, setFields] = useState<Fields>({});
  const [flags, setFlags] = useState<Record<string, boolean>>({});
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.nodes.listNodes({}).then((r) => {
      setNodes(r.nodes);
      setNode((n) => n || r.nodes[0]?.id || '');
    }, (e) => setError(errorText(e)));
  }, [api]);

  // The kinds some node serves (a new kind needs only its form here).
  const kinds = [...new Set(nodes.flatMap((n) => n.supportedKinds.map((k) => k.kind as PoolKind)))].filter((k) => FORMS[k]);
  const form = kind !== null ? FORMS[kind] : undefined;
  const fieldError = (key: string) => form?.fields.find((f) => f.key === key)?.check?.(fields[key] ?? '') ?? '';
  const settingsValid = !!form && form.fields.every((f) => !fieldError(f.key) && (f.optional || (fields[f.key] ?? '') !== ''));
  const firstValid = kind !== null && !nameError('pool', name) && (!form?.local || !!node);

  const save = useCallback(async () => {
    if (!form || kind === null) return;
    setBusy(true);
    setError('');
    try {
      const op = await api.pools.createPool({ name, config: form.config(fields, flags) as PoolConfig, nodeIds: form.local ? [node] : [] });
      for await (const t of api.tasks.watchTask({ taskId: op.taskId })) {
        if (t.state === TaskState.RUNNING) continue;
        if (t.state !== TaskState.SUCCEEDED) throw new Error(`task ${t.id} failed: ${t.error}`);
        onClose();
        return;
      }
    } catch (e) {
      setError(e instanceof Error && !('code' in e) ? e.message : errorText(e));
      setBusy(false);
    }
  }, [api, form, kind, name, fields, flags, node, onClose]);

  return (
    <Modal isOpen variant="large" aria-label="Create pool" onEscapePress={onClose}>
      <Wizard header={<WizardHeader title="Create pool" onClose={onClose} closeButtonAriaLabel="Close" />} onClose={onClose} onSave={save} height={520}>
        <WizardStep name="Kind and name" id="step-kind" footer={{ isNextDisabled: !firstValid }}>
          <Form>
            <FormGroup label="Kind" role="radiogroup" fieldId="kind" isStack>
              {kinds.length === 0 && <div>No node reports a pool kind yet.</div>}
              {kinds.map((k) => (
                <Radio key={k} id={`kind-${poolKind(k)}`} name="kind" label={poolKind(k)} isChecked={kind === k} onChange={() => setKind(k)} />
              ))}
            </FormGroup>
            <Checked id="pool-name" label="Name" value={name} onChange={setName} error={name ? nameError('pool', name) : ''} />
            {form?.local && (
              <FormGroup label="Node" fieldId="pool-node">
                <FormSelect id="pool-node" value={node} onChange={(_e, v) => setNode(v)}>
                  {nodes.map((n) => (
                    <FormSelectOption key={n.id} value={n.id} label={`${n.hostname} (${n.id})`} />
                  ))}
                </FormSelect>
              </FormGroup>
            )}
          </Form>
        </WizardStep>
        <WizardStep name={form ? `${poolKind(kind!)} settings` : 'Settings'} id="step-settings" isDisabled={!firstValid} footer={{ isNextDisabled: !settingsValid }}>
          <Form>
            {form?.fields.map((f) => (
              <Checked
                key={f.key}
                id={`field-${f.key}`}
                label={f.label}
                secret={f.secret}
                hint={f.hint}
                value={fields[f.key] ?? ''}
                onChange={(v) => setFields({ ...fields, [f.key]: v })}
                error={fields[f.key] ? fieldError(f.key) : ''}
              />
            ))}
            {form?.flags?.map((f) => (
              <Checkbox key={f.key} id={`flag-${f.key}`} label={f.label} isChecked={!!flags[f.key]} onChange={(_e, v) => setFlags({ ...flags, [f.key]: v })} />
            ))}
          </Form>
        </WizardStep>
        <WizardStep name="Review" id="step-review" isDisabled={!settingsValid || !firstValid} footer={{ nextButtonText: busy ? 'Creating…' : 'Create', isNextDisabled: busy }}>
          <dl>
            <dt>Name</dt>
            <dd>{name}</dd>
            <dt>Kind</dt>
            <dd>{kind !== null ? poolKind(kind) : ''}</dd>
            {form?.fields.map((f) => (
              <div key={f.key}>
                <dt>{f.label}</dt>
                <dd>{f.secret ? (fields[f.key] ? '(set)' : '') : fields[f.key]}</dd>
              </div>
            ))}
          </dl>
          {error && <Alert variant="danger" isInline title="The pool was not created" data-testid="create-pool-error">{error}</Alert>}
        </WizardStep>
      </Wizard>
    </Modal>
  );
}

function Checked(p: { id: string; label: string; value: string; onChange: (v: string) => void; error: string; secret?: boolean; hint?: string }) {
  return (
    <FormGroup label={p.label} fieldId={p.id}>
      <TextInput
        id={p.id}
        type={p.secret ? 'password' : 'text'}
        autoComplete="off"
        value={p.value}
        validated={p.error ? 'error' : 'default'}
        onChange={(_e, v) => p.onChange(v)}
      />
      {(p.error || p.hint) && (
        <FormHelperText>
          <HelperText>
            <HelperTextItem variant={p.error ? 'error' : 'default'}>{p.error || p.hint}</HelperTextItem>
          </HelperText>
        </FormHelperText>
      )}
    </FormGroup>
  );
}
