import { useEffect, useState } from 'react';
import { FormGroup, FormHelperText, FormSelect, FormSelectOption, HelperText, HelperTextItem, Split, SplitItem, TextInput } from '@patternfly/react-core';
import { SIZE_UNITS, type SizeUnit, formatBytes, toBytes } from '../api';

/** A size as a number and a unit; reports bytes, or null while it is not a
 * valid size (or, with `min`, smaller than it: a resize never shrinks). */
export function SizeInput({ id, label, min, onChange }: { id: string; label: string; min?: bigint; onChange: (b: bigint | null) => void }) {
  const [amount, setAmount] = useState('');
  const [unit, setUnit] = useState<SizeUnit>('GiB');
  const bytes = toBytes(amount, unit);
  const error = !amount ? '' : bytes === null ? 'a positive number' : min !== undefined && bytes < min ? `at least ${formatBytes(min)}: volumes never shrink` : '';
  useEffect(() => onChange(error || bytes === null ? null : bytes), [bytes, error, onChange]);
  return (
    <FormGroup label={label} fieldId={id}>
      <Split hasGutter>
        <SplitItem isFilled>
          <TextInput id={id} value={amount} onChange={(_e, v) => setAmount(v)} validated={error ? 'error' : 'default'} aria-label={`${label} amount`} />
        </SplitItem>
        <SplitItem>
          <FormSelect id={`${id}-unit`} aria-label={`${label} unit`} value={unit} onChange={(_e, v) => setUnit(v as SizeUnit)}>
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
