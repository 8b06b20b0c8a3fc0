import { rmSync } from 'node:fs';
import { dirname } from 'node:path';
import { cluster } from './cluster';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Stops the control plane it started (by pid, never by name) and removes its data. */
export default async function globalTeardown() {
  const c = cluster();
  if (alive(c.pid)) process.kill(c.pid, 'SIGTERM');
  for (let i = 0; i < 100 && alive(c.pid); i++) await sleep(100);
  if (alive(c.pid)) process.kill(c.pid, 'SIGKILL');
  rmSync(dirname(c.dataDir), { recursive: true, force: true });
}
