// The console with 1,000 volumes, in Chromium on loopback: time from
// navigation to the volumes table (and to the dashboard) rendered, and the
// gzip size of the built JS. Prints one JSON line.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { expect, test, type Page } from '@playwright/test';
import { cluster, lqctl, signIn } from '../e2e/cluster';

const HERE = dirname(fileURLToPath(import.meta.url));
const VOLUMES = Number(process.env.UI_BENCH_VOLUMES || 1000);
const SAMPLES = 15;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function timed(page: Page, path: string, rendered: () => Promise<void>): Promise<number> {
  const start = Date.now();
  await page.goto(`${cluster().url}/#/${path}`);
  await page.reload();
  await rendered();
  return Date.now() - start;
}

test('volumes page and dashboard with 1,000 volumes', async ({ page }) => {
  const have = lqctl(['pool', 'get', 'default']);
  expect(have.state).toBe('ready');
  for (let i = 0; i < VOLUMES; i++) {
    lqctl(['volume', 'create', '--pool', 'default', '--name', `v${String(i).padStart(4, '0')}`, '--size', '16M', '--no-wait']);
  }
  await expect.poll(() => lqctl(['task', 'list', '--running']).length, { timeout: 300_000 }).toBe(0);
  await signIn(page, cluster().adminToken);
  const volumes: number[] = [];
  const dashboard: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    // The first page (20 rows; the API orders by id).
    volumes.push(await timed(page, 'volumes', () => expect(page.locator('[data-testid^="volume-"]')).toHaveCount(20)));
    dashboard.push(await timed(page, 'overview', () => expect(page.getByTestId('capacity-default')).toContainText('ready')));
  }
  const assets = join(HERE, '..', 'dist', 'assets');
  const js = readdirSync(assets).filter((f) => f.endsWith('.js'));
  const gzipKb = js.reduce((n, f) => n + gzipSync(readFileSync(join(assets, f))).length, 0) / 1024;
  console.log(
    JSON.stringify({
      ui_volumes_page_ms: median(volumes),
      ui_dashboard_ms: median(dashboard),
      ui_bundle_kb: Math.round(gzipKb),
      volumes: VOLUMES,
    }),
  );
});
