// End-to-end test of the browser app in headless Chromium (playwright-core, /usr/bin/chromium).
//
//   node web/e2e/e2e.mjs --dist dist --artifact FILE --out DIR [--lens target/release/lens]
//
// Serves the built app (`trunk build --release`) from its own static server on 127.0.0.1, with the
// tiny quantized CLIP artifact at the page's default model URL, then: model ready (downloaded once),
// the 12 fixture photos added through the file input, a query typed key by key (grid of 12 with
// scores in descending order), "similar" (itself first, 1.00), delete (count decremented), reload
// (images still there, the model read from Cache Storage: one download in all), an unsupported file
// and a missing model (clear messages). With --lens: a real `lens serve` (tiny CLIP + tiny BLIP
// captions, CORS for the page) — the server's image appears here with its caption, and an image added
// here is sent up and gets its caption. Screenshots go to --out.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, existsSync, mkdirSync, statSync } from 'node:fs';
import { createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, extname, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { createInterface } from 'node:readline';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const dist = resolve(args.dist ?? join(root, 'dist'));
const artifact = resolve(args.artifact ?? '');
const out = resolve(args.out ?? join(root, 'web/docs'));
const lensBin = args.lens ? resolve(args.lens) : null;
const images = join(root, 'models/fixtures/images');
const photos = ['astronaut.png', 'astronaut_lossless.webp', 'camera_grey.png', 'chelsea_palette.png',
  'chelsea_rgba.png', 'coffee.jpg', 'coffee_exif3.jpg', 'coffee_lossy.webp', 'coffee_palette.gif',
  'coins_grey.jpg', 'rocket.jpg', 'rocket_exif6.jpg'];
assert.ok(existsSync(join(dist, 'index.html')), `no ${dist}/index.html: build with trunk first`);
assert.ok(existsSync(artifact) && statSync(artifact).isFile(), `--artifact ${artifact} is not a file`);
mkdirSync(out, { recursive: true });
const t0 = Date.now();
const log = (...m) => console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...m);

// --- a static server for dist/ that counts requests -----------------------------------------------
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css',
  '.lens': 'application/octet-stream', '.md': 'text/plain' };
const hits = new Map();
const web = createServer((req, res) => {
  const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
  hits.set(path, (hits.get(path) ?? 0) + 1);
  const file = path === '/models/clip.lens' ? artifact : join(dist, path === '/' ? 'index.html' : path);
  if (!file.startsWith(dist) && file !== artifact) { res.writeHead(403).end(); return; }
  if (!existsSync(file) || !statSync(file).isFile()) { res.writeHead(404).end('not found'); return; }
  res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream',
    'content-length': statSync(file).size, 'cache-control': 'no-store' });
  createReadStream(file).pipe(res);
});
await new Promise((ok) => web.listen(0, '127.0.0.1', ok));
const base = `http://127.0.0.1:${web.address().port}`;
log('serving', dist, 'at', base);

const profile = mkdtempSync(join(tmpdir(), 'lens-e2e-'));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 900 },
});
let server = null;
const failures = [];
try {
  const page = browser.pages()[0] ?? (await browser.newPage());
  page.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && log('console error:', m.text()));
  page.setDefaultTimeout(120_000);

  const total = () => page.$eval('#count', (e) => Number(e.dataset.total ?? -1));
  const cards = () => page.$$eval('#grid .card', (cs) => cs.map((c) => ({
    sha: c.dataset.sha, score: c.dataset.score === undefined ? null : Number(c.dataset.score),
    name: c.querySelector('.name')?.textContent, shown: c.querySelector('.score')?.textContent ?? null,
    caption: c.querySelector('.caption')?.textContent ?? null })));

  // 1. The model loads (downloaded, with a progress bar) and the page says so. Chromium has relaxed
  // SIMD, so the page started the worker built with it.
  await page.goto(base);
  await page.waitForSelector('#status[data-state="ready"]');
  assert.match(await page.textContent('#status'), /model ready: .*downloaded/);
  assert.equal(hits.get('/models/clip.lens'), 1);
  assert.equal(await page.getAttribute('#app', 'data-kernel'), 'relaxed-simd');
  log('model ready:', await page.textContent('#status'), '(int8 on relaxed SIMD)');

  // 2. The 12 photos through the file input; all indexed.
  await page.setInputFiles('#files', photos.map((p) => join(images, p)));
  await page.waitForFunction(() => document.querySelector('#count')?.dataset.total === '12');
  await page.waitForFunction(() => document.querySelectorAll('#grid .card img[src^="blob:"]').length === 12);
  log('12 photos indexed');

  // 3. Search as you type: the grid shows every image ranked, scores descending.
  await page.click('#query');
  await page.keyboard.type('a rocket on the launch pad', { delay: 40 });
  await page.waitForFunction(() => /12 results for “a rocket on the launch pad”/.test(document.querySelector('#count').textContent));
  let ranked = await cards();
  assert.equal(ranked.length, 12);
  for (let i = 1; i < ranked.length; i++) assert.ok(ranked[i - 1].score >= ranked[i].score, `scores descend: ${JSON.stringify(ranked)}`);
  assert.ok(ranked.every((c) => /^-?\d\.\d\d$/.test(c.shown)), 'each card shows its score');
  log('query ranked:', ranked.map((c) => `${c.name} ${c.shown}`).join(', '));
  await page.screenshot({ path: join(out, 'screenshot.png') });

  // 4. Similar: click an image, it comes first with score 1.00.
  const coffee = ranked.find((c) => c.name === 'coffee.jpg');
  await page.click(`#grid .card[data-sha="${coffee.sha}"] img`);
  await page.waitForFunction(() => /similar to coffee\.jpg/.test(document.querySelector('#count').textContent));
  ranked = await cards();
  assert.equal(ranked[0].sha, coffee.sha);
  assert.equal(ranked[0].shown, '1.00');
  log('similar to coffee.jpg:', ranked.slice(0, 3).map((c) => `${c.name} ${c.shown}`).join(', '));

  // 5. Delete one (camera_grey.png: the tiny BLIP gives it a non-empty caption, which step 9 waits
  // for; chelsea_rgba.png, composited onto white as the processors do, gets an empty one): gone, count
  // decremented.
  const victim = ranked.find((c) => c.name === 'camera_grey.png');
  await page.click(`#grid .card[data-sha="${victim.sha}"] .del`);
  await page.waitForFunction(() => document.querySelector('#count').dataset.total === '11');
  assert.ok(!(await cards()).some((c) => c.sha === victim.sha), 'the deleted image left the grid');
  log('deleted', victim.name);

  // 6. Reload, on the baseline worker this time (what browsers without relaxed SIMD run): the images are
  // still there, the model comes from Cache Storage (no second download), a query still ranks all 11.
  await page.goto(`${base}/?kernel=simd128`);
  await page.waitForSelector('#status[data-state="ready"]');
  assert.match(await page.textContent('#status'), /from this browser's cache/);
  assert.equal(await page.getAttribute('#app', 'data-kernel'), 'simd128');
  await page.waitForFunction(() => document.querySelector('#count')?.dataset.total === '11');
  assert.equal(hits.get('/models/clip.lens'), 1, 'the model was downloaded once');
  assert.ok(!(await cards()).some((c) => c.sha === victim.sha));
  await page.fill('#query', 'a rocket on the launch pad');
  await page.waitForFunction(() => /11 results for “a rocket on the launch pad”/.test(document.querySelector('#count').textContent));
  await page.fill('#query', '');
  await page.waitForFunction(() => /^11 images on this device/.test(document.querySelector('#count').textContent));
  log('after reload (simd128 worker): 11 images, model requests:', hits.get('/models/clip.lens'));

  // 7. An unsupported file says so.
  await page.setInputFiles('#files', [join(images, 'not_an_image.jpg')]);
  await page.waitForFunction(() => /not_an_image\.jpg was not added: unsupported/.test(document.querySelector('#message').textContent));
  assert.equal(await total(), 11);
  log('unsupported file:', await page.textContent('#message'));

  // 8. The phone layout.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.fill('#query', 'a cat');
  await page.waitForFunction(() => /results for “a cat”/.test(document.querySelector('#count').textContent));
  await page.screenshot({ path: join(out, 'screenshot-phone.png') });
  await page.setViewportSize({ width: 1280, height: 900 });

  // 9. Sync with a real `lens serve` (captions from the tiny BLIP).
  if (lensBin) {
    const data = mkdtempSync(join(tmpdir(), 'lens-e2e-data-'));
    server = spawn(lensBin, ['serve', '--model', join(root, 'models/fixtures/clip-tiny-quickgelu'),
      '--caption-model', join(root, 'models/fixtures/blip-tiny'), '--data', data, '--listen', '127.0.0.1:0',
      '--cors-origin', base, '--caption-retry-base-ms', '200'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, LENS_LOG: 'info' } });
    const addr = await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error('lens serve did not start')), 60_000);
      createInterface({ input: server.stderr }).on('line', (line) => {
        try {
          const v = JSON.parse(line);
          if (v.fields?.message === 'listening') { clearTimeout(timer); ok(v.fields.addr); }
        } catch { /* not JSON */ }
      });
      server.on('exit', (code) => fail(new Error(`lens serve exited (${code})`)));
    });
    const api = `http://${addr}`;
    for (let i = 0; ; i++) { // listening comes before the models are loaded
      const ready = await fetch(`${api}/readyz`).then((r) => r.ok, () => false);
      if (ready) break;
      assert.ok(i < 600, 'lens serve did not get ready in 60 s');
      await new Promise((ok) => setTimeout(ok, 100));
    }
    log('lens serve at', api);
    // The server gets the photo deleted here: it comes back from the server, with its caption.
    const form = new FormData();
    form.append('file', new Blob([readFileSync(join(images, victim.name))]), victim.name);
    const up = await fetch(`${api}/v1/images`, { method: 'POST', body: form });
    assert.ok(up.ok, `upload to lens serve: ${up.status}`);
    const body = await up.json();
    assert.equal((body.images?.[0] ?? body).sha256, victim.sha, 'same bytes, same sha256 on both sides');

    await page.fill('#query', '');
    await page.click('.sync summary');
    await page.fill('#server', api);
    await page.click('#sync-form button');
    const captioned = (sha) => page.waitForFunction((s) => {
      const c = document.querySelector(`#grid .card[data-sha="${s}"]`);
      return c && c.dataset.synced === '1' && c.querySelector('.caption')?.textContent;
    }, sha, { timeout: 180_000 });
    await captioned(victim.sha);
    log('the server\'s image is here with its caption');
    // A local image (rocket.jpg) is sent up, captioned by the server, and its caption comes back.
    const rocket = (await cards()).find((c) => c.name === 'rocket.jpg');
    await captioned(rocket.sha);
    await page.waitForFunction(() => document.querySelector('#count').dataset.total === '12');
    const synced = await cards();
    log('captions:', synced.filter((c) => c.caption).map((c) => `${c.name}: ${c.caption}`).join(' | '));
    const listed = await (await fetch(`${api}/v1/images?limit=50`)).json();
    assert.equal(listed.images.length, 12, 'every local image was sent up, none twice');
    assert.ok(listed.images.some((i) => i.sha256 === rocket.sha && i.caption), 'the local image was captioned on the server');
    await page.waitForSelector('#sync-status[data-state="idle"]');
    await page.screenshot({ path: join(out, 'screenshot-sync.png') });
    rmSync(data, { recursive: true, force: true });
  } else {
    log('sync part skipped (no --lens)');
  }

  // 10. A missing model says how to make one (last: the page is left without a model).
  await page.goto(`${base}/?model=models/missing.lens`);
  await page.waitForSelector('#message[data-kind="missing_model"]');
  assert.match(await page.textContent('#message'), /No model at .*missing\.lens.*lens models quantize/);
  log('missing model:', await page.textContent('#message'));

  assert.deepEqual(failures, []);
  log('ok');
} finally {
  if (server) server.kill();
  await browser.close();
  web.close();
  rmSync(profile, { recursive: true, force: true });
}
