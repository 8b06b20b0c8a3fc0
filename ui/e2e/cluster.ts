// The control plane the tests run against, and lqctl to check through the API
// what the UI did (never the UI checking itself).
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { expect, type Page } from '@playwright/test';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

export interface Cluster {
  url: string;
  dataDir: string;
  binDir: string;
  adminToken: string;
  viewerToken: string;
  pid: number;
  /** A Ceph cluster for pools of kind ceph: a monitor, an RBD pool and a user limited to it. */
  ceph: { monitor: string; pool: string; user: string; key: string };
}

export const STATE_FILE = join(HERE, '..', 'test-results', 'cluster.json');

export function cluster(): Cluster {
  return JSON.parse(readFileSync(STATE_FILE, 'utf8'));
}

/** lqctl -o json as the admin; throws with lqctl's stderr when it fails. */
export function lqctl(args: string[], credentials?: string): any {
  const c = cluster();
  const out = execFileSync(join(c.binDir, 'lqctl'), ['-o', 'json', ...args], {
    env: { ...process.env, LQCTL_CREDENTIALS: credentials ?? join(c.dataDir, 'lqctl.toml') },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return out.trim() ? JSON.parse(out) : null;
}

/** lqctl's failure: its stderr (the API's code and message). */
export function lqctlError(args: string[], credentials?: string): string {
  try {
    lqctl(args, credentials);
  } catch (e: any) {
    return String(e.stderr ?? e.message);
  }
  throw new Error(`lqctl ${args.join(' ')} succeeded`);
}

export async function signIn(page: Page, token: string) {
  await page.goto(cluster().url + '/');
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.locator('#whoami')).toBeVisible();
}

export async function shot(page: Page, name: string) {
  await page.screenshot({ path: join(HERE, '..', 'test-results', 'shots', `${name}.png`), fullPage: true });
}

export async function goTo(page: Page, section: string) {
  await page.getByRole('link', { name: section, exact: true }).click();
  await expect(page.getByRole('heading', { level: 2, name: section })).toBeVisible();
}
