// Loading, empty and error states, and a capacity bar: the same everywhere.
import { useCallback, useEffect, useState } from 'react';
import {
  Alert,
  Bullseye,
  EmptyState,
  EmptyStateBody,
  Progress,
  ProgressMeasureLocation,
  ProgressVariant,
  Spinner,
} from '@patternfly/react-core';
import { errorText, formatBytes } from '../api';

/** Loads `load()` now and every `refreshMs`; `reload` loads again at once. */
export function useLoad<T>(load: () => Promise<T>, refreshMs = 3000) {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState('');
  const reload = useCallback(() => {
    load()
      .then((d) => {
        setData(d);
        setError('');
      })
      .catch((e) => setError(errorText(e)));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [load]);
  useEffect(() => {
    reload();
    if (refreshMs <= 0) return;
    const t = setInterval(reload, refreshMs);
    return () => clearInterval(t);
  }, [reload, refreshMs]);
  return { data, error, reload };
}

export function Loading() {
  return (
    <Bullseye>
      <Spinner aria-label="Loading" />
    </Bullseye>
  );
}

export function LoadError({ error }: { error: string }) {
  return <Alert variant="danger" isInline title="Could not load" data-testid="load-error">{error}</Alert>;
}

export function Empty({ title, children }: { title: string; children?: React.ReactNode }) {
  return (
    <EmptyState titleText={title} headingLevel="h3">
      {children && <EmptyStateBody>{children}</EmptyStateBody>}
    </EmptyState>
  );
}

/** Used against a total: bytes, with a warning past 80 % and danger past 95 %. */
export function CapacityBar({ label, used, total }: { label: string; used: bigint; total: bigint }) {
  const pct = total > 0n ? Math.min(100, Number((used * 10000n) / total) / 100) : 0;
  const variant = pct >= 95 ? ProgressVariant.danger : pct >= 80 ? ProgressVariant.warning : undefined;
  return (
    <Progress
      value={pct}
      title={label}
      aria-label={label}
      measureLocation={ProgressMeasureLocation.outside}
      label={`${formatBytes(used)} of ${formatBytes(total)}`}
      valueText={`${formatBytes(used)} of ${formatBytes(total)}`}
      variant={variant}
    />
  );
}
