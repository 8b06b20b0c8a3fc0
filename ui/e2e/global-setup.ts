// Starts `limiquantix-controlplane --dev` on free loopback ports in a temp
// dir (its embedded node copies at 16 MiB/s, so a full clone can be watched
// and cancelled), waits for its pool, makes a viewer token.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { STATE_FILE, type Cluster } from './cluster';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as any).port;
      s.close(() => ok(port));
    });
    s.on('error', fail);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A throwaway Ceph cluster (testkit's, through its lq-test-ceph program),
 * stopped when its stdin closes. */
async function startCeph(binDir: string, log: number): Promise<{ child: ChildProcess; info: Cluster['ceph'] }> {
  const child = spawn(join(binDir, 'lq-test-ceph'), ['ui'], { stdio: ['pipe', 'pipe', log] });
  const info = await new Promise<Cluster['ceph']>((ok, fail) => {
    let out = '';
    const timer = setTimeout(() => fail(new Error('the test Ceph cluster did not start in 240 s; see test-results/ceph.log')), 240_000);
    child.stdout!.on('data', (d) => {
      out += d;
      const line = out.split('\n')[0];
      if (out.includes('\n')) {
        clearTimeout(timer);
        ok(JSON.parse(line));
      }
    });
    child.on('exit', (code) => fail(new Error(`lq-test-ceph exited (${code}); see test-results/ceph.log`)));
  });
  return { child, info };
}

export default async function globalSetup() {
  const binDir = resolve(process.env.LQ_BIN_DIR || join(HERE, '..', '..', 'target', 'debug'));
  const dataDir = mkdtempSync(join(tmpdir(), 'lq-ui-'));
  const [port, nodePort] = [await freePort(), await freePort()];
  writeFileSync(join(dataDir, 'node.toml'), '[limits]\ncopy_mib_per_sec = 16\n');
  // Pools refreshed and their capacity sampled every second: the pool detail's chart fills in while the tests run.
  writeFileSync(join(dataDir, 'control.toml'), 'pool_refresh_secs = 1\ncapacity_history_secs = 1\n');
  mkdirSync(dirname(STATE_FILE), { recursive: true });
  mkdirSync(join(dirname(STATE_FILE), 'shots'), { recursive: true });
  const log = openSync(join(dirname(STATE_FILE), 'controlplane.log'), 'w');
  const child = spawn(
    join(binDir, 'limiquantix-controlplane'),
    ['--dev', '--config', join(dataDir, 'control.toml'), '--data-dir', join(dataDir, 'lq-data'), '--listen', `127.0.0.1:${port}`, '--node-listen', `127.0.0.1:${nodePort}`, '--node-config', join(dataDir, 'node.toml')],
    { stdio: ['ignore', log, log], detached: false },
  );
  const credentials = join(dataDir, 'lq-data', 'lqctl.toml');
  const lqctl = (args: string[]) =>
    execFileSync(join(binDir, 'lqctl'), ['-o', 'json', ...args], { env: { ...process.env, LQCTL_CREDENTIALS: credentials }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the control plane exited (${child.exitCode}); see test-results/controlplane.log`);
    if (existsSync(credentials)) {
      try {
        const pools = JSON.parse(lqctl(['pool', 'list']));
        if (pools.some((p: any) => p.name === 'default' && p.state === 'ready')) break;
      } catch {
        // not serving yet
      }
    }
    if (Date.now() > deadline) throw new Error('the --dev control plane did not get its pool ready in 60 s');
    await sleep(200);
  }
  const adminToken = readFileSync(credentials, 'utf8').match(/^token\s*=\s*"([^"]+)"/m)?.[1];
  if (!adminToken) throw new Error(`no token in ${credentials}`);
  const viewer = JSON.parse(lqctl(['token', 'create', 'ui-viewer', '--role', 'viewer']));
  const viewerToken: string = viewer.secret;
  if (!viewerToken) throw new Error(`no viewer token in ${JSON.stringify(viewer)}`);
  const ceph = await startCeph(binDir, openSync(join(dirname(STATE_FILE), 'ceph.log'), 'w'));
  const state: Cluster = { url: `https://127.0.0.1:${port}`, dataDir: join(dataDir, 'lq-data'), binDir, adminToken, viewerToken, pid: child.pid!, ceph: ceph.info };
  writeFileSync(STATE_FILE, JSON.stringify(state));
  child.unref();
  // Teardown of what only this process holds: Ceph stops when its stdin closes.
  return async () => {
    ceph.child.stdin!.end();
    await new Promise((r) => ceph.child.once('exit', r));
  };
}
