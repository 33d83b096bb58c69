// Drives the broker's admin page in Debian's headless Chromium for
// e2e/admin_page_test.go. Input (environment): ADMIN_URL (http://host:port),
// ADMIN_TOKEN, STEP and its arguments:
//
//   STEP=revoke (default), AGENT_ID, ORG_ID: pastes the token, waits for
//   the agent's row, reads it, clicks Revoke, cancels, clicks Revoke again,
//   confirms and waits for the row to disappear; clicks "Verify audit log"
//   and waits for the verdict; opens "New registration token…" of ORG_ID,
//   cancels, opens it again, chooses replace, mints and reads the token and
//   command the page shows.
//   STEP=list, AGENT_ID: pastes the token, waits for the agent's row and
//   reads every agent row.
//
// Output: one JSON line on stdout; exit 1 with the reason on stderr on any
// failure.
'use strict';

const { chromium } = require('playwright-core');

const text = async (loc) => ((await loc.textContent()) || '').trim();

async function connect(page, token) {
  await page.fill('#token', token);
  await page.click('#connect');
}

async function revokeStep(page, res, { AGENT_ID, ORG_ID }) {
  if (!AGENT_ID || !ORG_ID) throw new Error('STEP=revoke needs AGENT_ID and ORG_ID');
  const row = page.locator(`#agents tbody tr[data-agent-id="${AGENT_ID}"]`);
  await row.waitFor({ state: 'visible', timeout: 15000 });
  res.lastPull = await text(row.locator('td.last-pull'));
  res.idle = await text(row.locator('td.idle-flag'));
  res.installations = await page.locator('#installations tbody tr').count();
  res.auditHint = await text(page.locator('#audit-hint'));
  res.tokenFieldAfter = await page.inputValue('#token');

  // Revoke: the dialog must open; Cancel first must change nothing.
  await row.locator('button.revoke').click();
  await page.locator('#confirm').waitFor({ state: 'visible' });
  res.dialogText = await text(page.locator('#confirm-text'));
  await page.click('#confirm-cancel');
  await page.locator('#confirm').waitFor({ state: 'hidden' });
  res.stillThereAfterCancel = await row.count();

  await row.locator('button.revoke').click();
  await page.locator('#confirm').waitFor({ state: 'visible' });
  await page.click('#confirm-ok');
  await page.waitForFunction((id) => document.querySelector('#status').textContent.includes('Revoked ' + id), AGENT_ID, { timeout: 15000 });
  await row.waitFor({ state: 'detached', timeout: 15000 });
  res.status = await text(page.locator('#status'));

  // Verify the audit log on the server.
  await page.click('#audit-verify');
  await page.waitForFunction(() => /^(intact|BROKEN|Verify failed)/.test(document.querySelector('#audit-verify-result').textContent), null, { timeout: 30000 });
  res.verify = await text(page.locator('#audit-verify-result'));
  res.verifyClass = await page.getAttribute('#audit-verify-result', 'class');

  // New registration token: Cancel first mints nothing.
  const inst = page.locator(`#installations tbody tr[data-org-id="${ORG_ID}"]`);
  res.mintedBefore = await page.isVisible('#minted');
  await inst.locator('button.mint').click();
  await page.locator('#mint').waitFor({ state: 'visible' });
  await page.click('#mint-cancel');
  await page.locator('#mint').waitFor({ state: 'hidden' });
  res.mintedAfterCancel = await page.isVisible('#minted');

  await inst.locator('button.mint').click();
  await page.locator('#mint').waitFor({ state: 'visible' });
  res.mintText = await text(page.locator('#mint-text'));
  res.warningOnAdd = await page.isVisible('#mint-warning');
  await page.check('#mint-replace');
  await page.locator('#mint-warning').waitFor({ state: 'visible' });
  res.mintWarning = await text(page.locator('#mint-warning'));
  await page.click('#mint-ok');
  await page.locator('#minted').waitFor({ state: 'visible', timeout: 15000 });
  res.mintedWhat = await text(page.locator('#minted-what'));
  res.mintedToken = await text(page.locator('#minted-token'));
  res.mintedCommand = await text(page.locator('#minted-command'));
  res.mintStatus = await text(page.locator('#status'));
  res.mintedSelect = await page.$eval('#minted-token', (el) => getComputedStyle(el).userSelect);
}

async function listStep(page, res, { AGENT_ID }) {
  if (!AGENT_ID) throw new Error('STEP=list needs AGENT_ID');
  await page.locator(`#agents tbody tr[data-agent-id="${AGENT_ID}"]`).waitFor({ state: 'visible', timeout: 15000 });
  res.agents = await page.$$eval('#agents tbody tr', (trs) => trs.map((tr) => tr.dataset.agentId));
  res.mintedOnLoad = await page.isVisible('#minted');
}

async function main() {
  const env = process.env;
  const { ADMIN_URL, ADMIN_TOKEN } = env;
  const step = env.STEP || 'revoke';
  if (!ADMIN_URL || !ADMIN_TOKEN) throw new Error('ADMIN_URL and ADMIN_TOKEN are required');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on('console', (m) => { if (m.type() === 'error') problems.push('console: ' + m.text()); });
    page.on('pageerror', (e) => problems.push('page error: ' + e.message));
    const resp = await page.goto(ADMIN_URL + '/admin/');
    const res = { step, csp: resp.headers()['content-security-policy'] || '' };

    // Before the token: nothing is loaded.
    res.rowsBefore = await page.locator('#agents tbody tr').count();
    await connect(page, ADMIN_TOKEN);
    if (step === 'revoke') {
      await revokeStep(page, res, env);
    } else if (step === 'list') {
      await listStep(page, res, env);
    } else {
      throw new Error('unknown STEP ' + step);
    }
    res.problems = problems;
    process.stdout.write(JSON.stringify(res) + '\n');
  } finally {
    await browser.close();
  }
}

main().catch((e) => {
  process.stderr.write('admin_page.js: ' + (e && e.stack || e) + '\n');
  process.exit(1);
});
