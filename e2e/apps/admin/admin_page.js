// Drives the broker's admin page in Debian's headless Chromium for
// e2e/admin_page_test.go. Input (environment): ADMIN_URL (http://host:port),
// ADMIN_TOKEN, AGENT_ID. It pastes the token, waits for the agent's row,
// reads it, clicks Revoke, confirms in the dialog and waits for the row to
// disappear. Output: one JSON line on stdout; exit 1 with the reason on
// stderr on any failure.
'use strict';

const { chromium } = require('playwright-core');

async function main() {
  const { ADMIN_URL, ADMIN_TOKEN, AGENT_ID } = process.env;
  if (!ADMIN_URL || !ADMIN_TOKEN || !AGENT_ID) throw new Error('ADMIN_URL, ADMIN_TOKEN and AGENT_ID are required');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    const resp = await page.goto(ADMIN_URL + '/admin/');
    const csp = resp.headers()['content-security-policy'] || '';

    // Before the token: nothing is loaded.
    const rowsBefore = await page.locator('#agents tbody tr').count();

    await page.fill('#token', ADMIN_TOKEN);
    await page.click('#connect');
    const row = page.locator(`#agents tbody tr[data-agent-id="${AGENT_ID}"]`);
    await row.waitFor({ state: 'visible', timeout: 15000 });
    const lastPull = (await row.locator('td.last-pull').textContent()).trim();
    const idle = (await row.locator('td.idle-flag').textContent()).trim();
    const installations = await page.locator('#installations tbody tr').count();
    const auditHint = (await page.locator('#audit-hint').textContent()).trim();
    const tokenFieldAfter = await page.inputValue('#token');

    // Revoke: the dialog must open; Cancel first must change nothing.
    await row.locator('button.revoke').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    const dialogText = (await page.locator('#confirm-text').textContent()).trim();
    await page.click('#confirm-cancel');
    await page.locator('#confirm').waitFor({ state: 'hidden' });
    const stillThere = await row.count();

    await row.locator('button.revoke').click();
    await page.locator('#confirm').waitFor({ state: 'visible' });
    await page.click('#confirm-ok');
    await page.waitForFunction((id) => document.querySelector('#status').textContent.includes('Revoked ' + id), AGENT_ID, { timeout: 15000 });
    await row.waitFor({ state: 'detached', timeout: 15000 });
    const status = (await page.locator('#status').textContent()).trim();

    process.stdout.write(JSON.stringify({
      csp, rowsBefore, lastPull, idle, installations, auditHint, tokenFieldAfter,
      dialogText, stillThereAfterCancel: stillThere, status, problems,
    }) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write('admin_page.js: ' + (e && e.stack || e) + '\n');
  process.exit(1);
});
