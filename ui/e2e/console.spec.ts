// The web console in Chromium against a real control plane: every change
// made through the UI is checked afterwards through the API (lqctl), and
// every page visited is kept as a screenshot in test-results/shots.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test, type Page } from '@playwright/test';
import { cluster, goTo, lqctl, lqctlError, shot, signIn } from './cluster';

const GIB = 1 << 30;

// No page may log an error or throw: collected for each test, checked after it.
let pageErrors: string[] = [];
test.beforeEach(({ page }) => {
  pageErrors = [];
  page.on('console', (m) => {
    if (m.type() === 'error') pageErrors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => pageErrors.push(`uncaught: ${e.message}`));
});
test.afterEach(() => {
  expect(pageErrors).toEqual([]);
});

function volume(name: string): any {
  return lqctl(['volume', 'get', name]);
}

function volumeNames(): string[] {
  return lqctl(['volume', 'list']).map((v: any) => v.name);
}

async function volumeAction(page: Page, name: string, action: string) {
  await page.getByRole('button', { name: `Actions for ${name}`, exact: true }).click();
  await page.getByRole('menuitem', { name: action }).click();
}

test('sign-in, overview, pools, nodes and tasks show the dev cluster', async ({ page }) => {
  await page.goto(cluster().url + '/');
  await page.getByLabel('API token').fill('not-a-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page.getByText(/Unauthenticated|PermissionDenied/)).toBeVisible();
  await shot(page, 'sign-in-refused');

  await signIn(page, cluster().adminToken);
  await expect(page.locator('#whoami')).toContainText('admin');
  await expect(page.locator('#overview-nodes')).toContainText('1 online, 0 offline');
  await expect(page.getByTestId('capacity-default')).toContainText('ready');
  await shot(page, 'overview');

  await goTo(page, 'Pools');
  const row = page.getByTestId('pool-default');
  await expect(row).toContainText('local');
  await expect(row).toContainText('1/1 ready');
  await shot(page, 'pools');
  await row.getByRole('button', { name: 'default' }).click();
  const detail = page.getByRole('dialog', { name: 'Pool default' });
  await expect(detail.getByTestId('pool-capabilities')).toContainText('linked clones: yes');
  await expect(detail.getByRole('row', { name: /ready/ })).toHaveCount(1);
  await expect(detail.getByTestId('pool-volume-count')).toContainText(`${lqctl(['volume', 'list', '--pool', 'default']).length} volume(s)`);
  // Capacity over time, from the samples the control plane keeps (one a second here).
  await expect(detail.getByTestId('capacity-history')).toBeVisible({ timeout: 10_000 });
  await expect(detail.getByRole('img', { name: /^Capacity over time: .* used and .* provisioned of / })).toBeVisible();
  await shot(page, 'pool-detail');
  await detail.getByRole('button', { name: 'Close' }).click();

  await goTo(page, 'Nodes');
  await expect(page.getByText('local, ceph, nfs, iscsi')).toBeVisible();
  await shot(page, 'nodes');

  await goTo(page, 'Tasks');
  await expect(page.getByText('pool.create').first()).toBeVisible();
  await shot(page, 'tasks');
});

test('the create-pool wizard shows the refusal in place, then creates the pool', async ({ page }) => {
  await signIn(page, cluster().adminToken);
  await goTo(page, 'Pools');
  await page.getByRole('button', { name: 'Create pool' }).click();
  await page.getByLabel('local').check();
  const name = page.getByLabel('Name', { exact: true });
  await name.fill('Bad Name');
  await expect(page.getByText("start with a lowercase letter or a digit")).toBeVisible();
  await expect(page.getByRole('button', { name: 'Next' })).toBeDisabled();
  await name.fill('uipool');
  await page.getByRole('button', { name: 'Next' }).click();
  // Passes the form's checks, refused by the node: outside its pool roots.
  await page.getByLabel('Directory on the node').fill('/etc/lq-not-a-pool-root');
  await page.getByRole('button', { name: 'Next' }).click();
  await shot(page, 'create-pool-review');
  await page.getByRole('button', { name: 'Create' }).click();
  await expect(page.getByTestId('create-pool-error')).toContainText(/pool root|outside|inside/i);
  await shot(page, 'create-pool-refused');
  expect(lqctl(['pool', 'list']).map((p: any) => p.name)).not.toContain('uipool');

  await page.getByRole('button', { name: 'Back' }).click();
  await page.getByLabel('Directory on the node').fill(join(cluster().dataDir, 'node', 'pools', 'uipool'));
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByRole('button', { name: 'Create' }).click();
  await expect(page.getByTestId('pool-uipool')).toContainText('1/1 ready');
  const pool = lqctl(['pool', 'get', 'uipool']);
  expect(pool.kind).toBe('local');
  expect(pool.state).toBe('ready');
  await shot(page, 'pools-after-create');
});

test('volumes: create, clone linked and full, resize, sort, move, snapshot, revert and delete', async ({ page }) => {
  await signIn(page, cluster().adminToken);
  await goTo(page, 'Volumes');
  await page.getByRole('button', { name: 'Create volume' }).click();
  await page.getByLabel('Name', { exact: true }).fill('web1');
  await page.getByLabel('Size amount').fill('1');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.getByTestId('volume-web1')).toContainText('available');
  expect(volume('web1').size_bytes).toBe(GIB);
  await shot(page, 'volumes');

  await volumeAction(page, 'web1', 'Clone');
  await page.getByLabel('Name', { exact: true }).fill('web1-linked');
  await page.getByRole('dialog').getByRole('button', { name: 'Clone' }).click();
  await expect(page.getByTestId('volume-web1-linked')).toBeVisible();
  expect(volume('web1-linked').backing_volume_id).toBe(volume('web1').id);

  await volumeAction(page, 'web1-linked', 'Clone');
  await page.getByLabel('Name', { exact: true }).fill('web1-full');
  await page.getByLabel(/^Full/).check();
  await page.getByRole('dialog').getByRole('button', { name: 'Clone' }).click();
  await expect(page.getByTestId('volume-web1-full')).toBeVisible();
  expect(volume('web1-full').backing_volume_id ?? null).toBeNull();

  // Grow only: a smaller size is refused by the form itself.
  await volumeAction(page, 'web1-full', 'Resize');
  await page.getByLabel('New size amount').fill('512');
  await page.getByLabel('New size unit').selectOption('MiB');
  await expect(page.getByText('volumes never shrink')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Grow' })).toBeDisabled();
  await page.getByLabel('New size amount').fill('2');
  await page.getByLabel('New size unit').selectOption('GiB');
  await page.getByRole('button', { name: 'Grow' }).click();
  await expect(page.getByTestId('volume-web1-full')).toContainText('2.0 GiB');
  expect(volume('web1-full').size_bytes).toBe(2 * GIB);
  await shot(page, 'volumes-with-clones');

  // Sorted by the server: by name both ways, then by size, largest first.
  await page.getByLabel('Name filter').fill('web1');
  const rows = () => page.locator('tbody tr[data-testid^="volume-"]').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-testid')));
  const sortBy = (column: string) => page.getByRole('columnheader', { name: column }).getByRole('button').click();
  await sortBy('Name');
  await expect.poll(rows).toEqual(['volume-web1', 'volume-web1-full', 'volume-web1-linked']);
  await sortBy('Name');
  await expect.poll(rows).toEqual(['volume-web1-linked', 'volume-web1-full', 'volume-web1']);
  await sortBy('Size');
  await expect.poll(async () => (await rows())[2]).toBe('volume-web1-full');
  await sortBy('Size');
  await expect.poll(async () => (await rows())[0]).toBe('volume-web1-full');
  await shot(page, 'volumes-sorted');
  await page.getByLabel('Name filter').fill('');

  // Moved into another pool of the node: same name and id, the new pool shown.
  const nodeId = lqctl(['node', 'list'])[0].id;
  lqctl(['pool', 'create', 'ui-moved', '--local-path', join(cluster().dataDir, 'node', 'pools', 'ui-moved'), '--node', nodeId]);
  const before = volume('web1-full');
  await page.reload();
  await volumeAction(page, 'web1-full', 'Move to another pool');
  await page.getByLabel('Target pool').selectOption('ui-moved');
  await shot(page, 'volume-move');
  await page.getByRole('dialog').getByRole('button', { name: 'Move' }).click();
  await expect(page.getByTestId('volume-web1-full')).toContainText('ui-moved');
  const after = volume('web1-full');
  expect([after.id, after.pool_id, after.state]).toEqual([before.id, lqctl(['pool', 'get', 'ui-moved']).id, 'available']);

  // A snapshot, then a revert confirmed by the user.
  await volumeAction(page, 'web1-full', 'Snapshots');
  await page.getByLabel('New snapshot').fill('before-upgrade');
  await page.getByRole('button', { name: 'Take snapshot' }).click();
  await expect(page.getByTestId('snapshot-before-upgrade')).toBeVisible();
  await expect(page.getByTestId('snapshot-before-upgrade')).toContainText('Taken detached');
  await expect(page.locator('#snapshot-quiesce')).toHaveCount(0);
  expect(lqctl(['snapshot', 'list', 'web1-full']).map((s: any) => s.name)).toEqual(['before-upgrade']);
  await page.getByTestId('snapshot-before-upgrade').getByRole('button', { name: 'Revert' }).click();
  await expect(page.getByText('What was written since is lost')).toBeVisible();
  await shot(page, 'snapshot-revert-confirm');
  await page.getByRole('button', { name: 'Revert now' }).click();
  await expect(page.getByText('What was written since is lost')).toBeHidden();
  await expect(page.getByTestId('snapshot-error')).toHaveCount(0);
  const tasks = lqctl(['task', 'list']);
  expect(tasks.find((t: any) => t.kind === 'snapshot.revert')?.state).toBe('succeeded');
  await page.getByRole('button', { name: 'Done' }).click();

  // A base of a linked clone cannot go: the refusal names the clone.
  await volumeAction(page, 'web1', 'Delete');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await expect(page.getByTestId('operation-error')).toContainText(volume('web1-linked').id);
  await shot(page, 'delete-refused');
  await page.getByRole('button', { name: 'Cancel' }).click();
  expect(volumeNames()).toContain('web1');
  for (const name of ['web1-linked', 'web1']) {
    await volumeAction(page, name, 'Delete');
    await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
    await expect(page.getByTestId(`volume-${name}`)).toHaveCount(0);
  }
  expect(volumeNames()).not.toContain('web1');
  expect(volumeNames()).not.toContain('web1-linked');
});

test("a full clone's progress moves in the task drawer and cancel undoes it", async ({ page }) => {
  // A source holding data: the node copies at 16 MiB/s (global-setup).
  const big = lqctl(['volume', 'create', '--pool', 'default', '--name', 'big', '--size', '1G']);
  const file = join(cluster().dataDir, 'node', 'pools', 'default', `lq-${big.id}.qcow2`);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 160M', file], { stdio: 'ignore' });

  await signIn(page, cluster().adminToken);
  await goTo(page, 'Volumes');
  await volumeAction(page, 'big', 'Clone');
  await page.getByLabel('Name', { exact: true }).fill('big-copy');
  await page.getByLabel(/^Full/).check();
  await page.getByRole('dialog').getByRole('button', { name: 'Clone' }).click();
  await expect(page.getByRole('dialog').getByRole('progressbar')).toBeVisible();
  await page.getByRole('button', { name: 'Leave it running' }).click();

  await goTo(page, 'Tasks');
  await page.getByRole('row', { name: /volume\.create.*running/ }).first().click();
  const bar = page.locator('#task-progress').getByRole('progressbar');
  await expect(bar).toBeVisible();
  const first = Number(await bar.getAttribute('aria-valuenow'));
  await expect.poll(async () => Number(await bar.getAttribute('aria-valuenow')), { timeout: 15_000 }).toBeGreaterThan(first);
  await shot(page, 'task-progress');
  await page.getByRole('button', { name: 'Cancel task' }).click();
  await expect(page.getByTestId('task-state')).toHaveText('cancelled', { timeout: 30_000 });
  await shot(page, 'task-cancelled');
  expect(volumeNames()).not.toContain('big-copy');
  expect(volumeNames()).toContain('big');
});

test('a viewer sees no way to change anything, and the API refuses it anyway', async ({ page }) => {
  await signIn(page, cluster().viewerToken);
  await expect(page.locator('#whoami')).toContainText('viewer');
  await goTo(page, 'Volumes');
  await expect(page.getByTestId('volume-big')).toBeVisible();
  await expect(page.getByRole('button', { name: 'Create volume' })).toHaveCount(0);
  await expect(page.getByRole('button', { name: /^Actions for/ })).toHaveCount(0);
  await goTo(page, 'Pools');
  await expect(page.getByRole('button', { name: 'Create pool' })).toHaveCount(0);
  await shot(page, 'viewer-pools');
  const c = cluster();
  const credentials = join(c.dataDir, '..', 'viewer.toml');
  const admin = readFileSync(join(c.dataDir, 'lqctl.toml'), 'utf8');
  writeFileSync(credentials, admin.replace(/^token\s*=.*$/m, `token = "${c.viewerToken}"`), { mode: 0o600 });
  expect(lqctlError(['volume', 'create', '--pool', 'default', '--name', 'sneaky', '--size', '1G'], credentials)).toContain('PermissionDenied');
  expect(volumeNames()).not.toContain('sneaky');
});

test('an image is imported from the node; an attach that cannot proceed says why and is cancelled', async ({ page }) => {
  const image = join(cluster().dataDir, 'node', 'images', 'seed.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '96M']);
  execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x42 0 8M', image], { stdio: 'ignore' });
  await signIn(page, cluster().adminToken);
  await goTo(page, 'Volumes');
  await page.getByRole('button', { name: 'Import image' }).click();
  await page.getByLabel('Name', { exact: true }).fill('seeded');
  await page.getByLabel(/^Image file on the node/).fill(image);
  await page.getByRole('dialog').getByRole('button', { name: 'Import' }).click();
  await expect(page.getByTestId('volume-seeded')).toContainText('available');
  expect(volume('seeded').size_bytes).toBe(96 * 1024 * 1024);

  await volumeAction(page, 'seeded', 'Attach to a VM');
  await page.getByLabel(/^VM/).fill('no-such-vm');
  await page.getByRole('dialog').getByRole('button', { name: 'Attach' }).click();
  // This node has no libvirtd: the task says why it is retrying while it runs.
  await expect(page.getByTestId('operation-step')).toContainText('libvirt');
  await shot(page, 'attach-retrying');
  const task = lqctl(['task', 'list', '--running']).find((t: any) => t.kind === 'volume.attach');
  lqctl(['task', 'cancel', task.id]);
  await expect(page.getByTestId('operation-error')).toContainText('cancelled');
  await shot(page, 'attach-cancelled');
  expect(volume('seeded').attached_to ?? null).toBeNull();
  expect(volume('seeded').state).toBe('available');
});

test('a Ceph pool through the wizard, with its key write-only, and a volume in it', async ({ page }) => {
  const ceph = cluster().ceph;
  await signIn(page, cluster().adminToken);
  await goTo(page, 'Pools');
  await page.getByRole('button', { name: 'Create pool' }).click();
  await page.getByLabel('ceph').check();
  await page.getByLabel('Name', { exact: true }).fill('rbd1');
  await page.getByRole('button', { name: 'Next' }).click();
  await page.getByLabel('Monitors', { exact: true }).fill('not a monitor');
  await expect(page.getByText('host or host:port')).toBeVisible();
  await page.getByLabel('Monitors', { exact: true }).fill(ceph.monitor);
  await page.getByLabel('Ceph pool', { exact: true }).fill(ceph.pool);
  await page.getByLabel('Ceph user', { exact: true }).fill(ceph.user);
  await page.getByLabel('Key', { exact: true }).fill(ceph.key);
  await expect(page.getByLabel('Key', { exact: true })).toHaveAttribute('type', 'password');
  await page.getByRole('button', { name: 'Next' }).click();
  await expect(page.getByRole('dialog')).not.toContainText(ceph.key);
  await shot(page, 'create-ceph-pool-review');
  await page.getByRole('button', { name: 'Create' }).click();
  await expect(page.getByTestId('pool-rbd1')).toContainText('1/1 ready', { timeout: 60_000 });
  expect(await page.content()).not.toContain(ceph.key);
  const pool = lqctl(['pool', 'get', 'rbd1']);
  expect([pool.kind, pool.state]).toEqual(['ceph', 'ready']);
  await shot(page, 'pools-with-ceph');

  await goTo(page, 'Volumes');
  await page.getByRole('button', { name: 'Create volume' }).click();
  await page.getByLabel('Pool', { exact: true }).selectOption('rbd1');
  await page.getByLabel('Name', { exact: true }).fill('rbd-disk');
  await page.getByLabel('Size amount').fill('2');
  await page.getByRole('dialog').getByRole('button', { name: 'Create' }).click();
  await expect(page.getByTestId('volume-rbd-disk')).toContainText('available');
  const v = volume('rbd-disk');
  expect([v.pool_id, v.size_bytes, v.format]).toEqual([pool.id, 2 * GIB, 'raw']);
});

test('the console works from the keyboard', async ({ page }) => {
  const name = `typed${test.info().repeatEachIndex}`;
  await page.goto(cluster().url + '/');
  await page.getByLabel('API token').focus();
  await page.keyboard.type(cluster().adminToken);
  await page.keyboard.press('Enter');
  await expect(page.locator('#whoami')).toBeVisible();
  await page.getByRole('link', { name: 'Volumes', exact: true }).focus();
  await page.keyboard.press('Enter');
  await expect(page.getByRole('heading', { level: 2, name: 'Volumes' })).toBeVisible();
  await page.getByRole('button', { name: 'Create volume' }).focus();
  await page.keyboard.press('Enter');
  await page.getByLabel('Name', { exact: true }).focus();
  await page.keyboard.type(name);
  await page.keyboard.press('Tab');
  await page.keyboard.type('1');
  await page.keyboard.press('Enter');
  await expect(page.getByTestId(`volume-${name}`)).toContainText('available');
  expect(volume(name).size_bytes).toBe(GIB);
  await volumeAction(page, name, 'Delete');
  await page.keyboard.press('Escape');
  await expect(page.getByRole('dialog')).toHaveCount(0);
  expect(volumeNames()).toContain(name);
});
