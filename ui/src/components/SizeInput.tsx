import { useState } from 'react';
import { FormGroup, FormHelperText, FormSelect, FormSelectOption, HelperText, HelperTextItem, Split, SplitItem, TextInput } from '@patternfly/react-core';
import { SIZE_UNITS, type SizeUnit, formatBytes, toBytes } from '../api';

function sizeError(amount: string, bytes: bigint | null, min?: bigint): string {
  if (!amount) return '';
  if (bytes === null) return 'a positive number';
  if (min !== undefined && bytes < min) return `at least ${formatBytes(min)}: volumes never shrink`;
  return '';
}

/** A size as a number and a unit; reports bytes, or null while it is not a
 * valid size (or, with `min`, smaller than it: a resize never shrinks).
 * Reported as the user types, so a submit right after sees the value. */
export function SizeInput({ id, label, min, onChange }: { id: string; label: string; min?: bigint; onChange: (b: bigint | null) => void }) {
  const [amount, setAmount] = useState('');
  const [unit, setUnit] = useState<SizeUnit>('GiB');
  const update = (a: string, u: SizeUnit) => {
    setAmount(a);
    setUnit(u);
    const bytes = toBytes(a, u);
    onChange(sizeError(a, bytes, min) || bytes === null ? null : bytes);
  };
  const error = sizeError(amount, toBytes(amount, unit), min);
  return (
    <FormGroup label={label} fieldId={id}>
      <Split hasGutter>
        <SplitItem isFilled>
          <TextInput id={id} value={amount} onChange={(_e, v) => update(v, unit)} validated={error ? 'error' : 'default'} aria-label={`${label} amount`} />
        </SplitItem>
        <SplitItem>
          <FormSelect id={`${id}-unit`} aria-label={`${label} unit`} value={unit} onChange={(_e, v) => update(amount, v as SizeUnit)}>
            {SIZE_UNITS.map((u) => <FormSelectOption key={u} value={u} label={u} />)}
          </FormSelect>
        </SplitItem>
      </Split>
      {error && (
        <FormHelperText>
          <HelperText>
            <HelperTextItem variant="error">{error}</HelperTextItem>
          </HelperText>
        </FormHelperText>
      )}
    </FormGroup>
  );
}
