// Drives Debian's Chromium (never a downloaded browser) through the test page, as two users:
// the owning team's, who sees the card and reveals the credentials, and another team's, who
// does not. Prints what a person would read off the card as one JSON line on stdout; the
// credentials' values only as SHA-256, so no secret reaches the test's output.
//   node dev/browser.mjs <page url> <paved origin> <owner token> <other token> <screenshot dir>
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [pageUrl, paved, ownerToken, otherToken, shots] = process.argv.slice(2);
const sha = s => createHash('sha256').update(s).digest('hex');

// The flags this machine needs: no background networking (its closed network refuses it).
const args = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const profile = mkdtempSync(join(tmpdir(), 'paved-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args,
  viewport: { width: 900, height: 900 },
});
const out = {};
const consoleErrors = [];
try {
  const open = async (token, name) => {
    const page = await context.newPage();
    page.on('console', m => m.type() === 'error' && consoleErrors.push(`${name}: ${m.text()}`));
    page.on('pageerror', e => consoleErrors.push(`${name}: ${e.message}`));
    const q = new URLSearchParams({ entity: new URL('entity.json', pageUrl).href, paved, token });
    await page.goto(`${pageUrl}?${q}`);
    return page;
  };
  const text = (page, id) => page.getByTestId(id).first().innerText();

  const owner = await open(ownerToken, 'owner');
  await owner.getByTestId('paved-status').waitFor({ timeout: 30000 });
  out.owner = {
    status: await text(owner, 'paved-status'),
    monthlyCost: await text(owner, 'paved-monthly-cost'),
    monthToDate: await text(owner, 'paved-month-to-date'),
    expires: await text(owner, 'paved-expires-at'),
    expiresAt: await owner.getByTestId('paved-expires-at').getAttribute('data-value'),
    steps: await text(owner, 'paved-steps'),
    showCredentialsButtons: await owner.getByRole('button', { name: 'Show credentials' }).count(),
  };
  await owner.screenshot({ path: join(shots, 'owner-card.png'), fullPage: true });
  await owner.getByRole('button', { name: 'Show credentials' }).click();
  const creds = owner.getByTestId('paved-credentials');
  await creds.waitFor({ timeout: 30000 });
  // Each value the card shows, by its path (part.name), as SHA-256.
  out.owner.credentials = Object.fromEntries(
    await creds
      .locator('[data-credential]')
      .evaluateAll(vs => vs.map(v => [v.getAttribute('data-credential'), v.textContent])),
  );
  for (const k of Object.keys(out.owner.credentials)) {
    out.owner.credentials[k] = sha(out.owner.credentials[k]);
  }
  // The screenshot shows the card, with the revealed values covered.
  await creds
    .locator('[data-credential]')
    .evaluateAll(vs => vs.forEach(v => (v.textContent = '••••••••')));
  await owner.screenshot({ path: join(shots, 'owner-credentials.png'), fullPage: true });

  const other = await open(otherToken, 'other');
  await other.getByTestId('paved-error').waitFor({ timeout: 30000 });
  out.other = {
    message: await text(other, 'paved-error'),
    showCredentialsButtons: await other.getByRole('button', { name: 'Show credentials' }).count(),
  };
  await other.screenshot({ path: join(shots, 'other-team.png'), fullPage: true });
  out.consoleErrors = consoleErrors;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(out));
