import type { CapacitySample } from '../gen/limiquantix/storage/v1/control_pb';
import { formatBytes } from '../api';

const W = 640;
const H = 160;
const PAD = { left: 8, right: 8, top: 12, bottom: 20 };

/** A pool's capacity over time: used and provisioned, against its total. */
export function CapacityChart({ samples }: { samples: CapacitySample[] }) {
  if (samples.length < 2) {
    return (
      <p data-testid="capacity-history-empty">
        Capacity over time appears here once the control plane has sampled this pool twice ({samples.length} sample so far).
      </p>
    );
  }
  const t0 = Number(samples[0].unixSeconds);
  const t1 = Number(samples[samples.length - 1].unixSeconds);
  const top = Math.max(...samples.map((s) => Math.max(Number(s.totalBytes), Number(s.provisionedBytes))), 1);
  const x = (t: bigint) => PAD.left + ((Number(t) - t0) / Math.max(t1 - t0, 1)) * (W - PAD.left - PAD.right);
  const y = (v: bigint) => H - PAD.bottom - (Number(v) / top) * (H - PAD.top - PAD.bottom);
  const line = (pick: (s: CapacitySample) => bigint) => samples.map((s, i) => `${i ? 'L' : 'M'}${x(s.unixSeconds).toFixed(1)},${y(pick(s)).toFixed(1)}`).join(' ');
  const last = samples[samples.length - 1];
  const when = (t: number) => new Date(t * 1000).toLocaleString();
  return (
    <figure style={{ margin: '1em 0' }}>
      <svg
        role="img"
        aria-label={`Capacity over time: ${formatBytes(last.usedBytes)} used and ${formatBytes(last.provisionedBytes)} provisioned of ${formatBytes(last.totalBytes)}`}
        data-testid="capacity-history"
        viewBox={`0 0 ${W} ${H}`}
        width="100%"
        height={H}
      >
        <path d={line((s) => s.totalBytes)} fill="none" stroke="#6a6e73" strokeDasharray="4 3" />
        <path d={line((s) => s.provisionedBytes)} fill="none" stroke="#f0ab00" strokeWidth={2} />
        <path d={line((s) => s.usedBytes)} fill="none" stroke="#0066cc" strokeWidth={2} />
        <text x={PAD.left} y={H - 4} fontSize={11}>
          {when(t0)}
        </text>
        <text x={W - PAD.right} y={H - 4} fontSize={11} textAnchor="end">
          {when(t1)}
        </text>
      </svg>
      <figcaption>
        <span style={{ color: '#0066cc' }}>■</span> used {formatBytes(last.usedBytes)} · <span style={{ color: '#f0ab00' }}>■</span> provisioned{' '}
        {formatBytes(last.provisionedBytes)} · <span style={{ color: '#6a6e73' }}>┄</span> total {formatBytes(last.totalBytes)} ({samples.length} samples)
      </figcaption>
    </figure>
  );
}
