// End-to-end test of the edge: a real `lens serve` (the origin), the Worker in `wrangler dev` (workerd),
// local R2 and KV seeded by wrangler itself. Run by scripts/test-edge.sh after the Worker is built.
//
//   node edge/test/edge.mjs --lens target/release/lens [--full --full-artifact FILE]
//
// Asserts, in order: the Worker runs in workerd and its bundle holds no weights; uploads through the edge
// land in R2 and on the origin (201 then 200, blob byte for byte, 304); a non-image, an oversize body and a
// bad key are refused with nothing stored anywhere; after the scheduled sync the edge holds the origin's
// vectors; edge search gives the origin's ids in the origin's order and the edge's text embedding matches
// the origin's — while the origin's search and text-embedding counters do not move; a panic resets the
// instance; the origin killed:
// search still answers, uploads get 502; a mismatched or missing model in R2: 503 model_mismatch;
// wasm memory after 50 queries is printed.
// --full (opt-in, scripts/test-edge.sh --full): a full-size random ViT-B/32 text artifact: wasm memory
// ≤ 100 MiB after 50 queries, cold start printed.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, readdirSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer } from 'node:net';
import assert from 'node:assert/strict';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const argv = process.argv.slice(2);
const arg = (name) => { const i = argv.indexOf(`--${name}`); return i >= 0 ? argv[i + 1] : undefined; };
const lensBin = resolve(arg('lens') ?? join(root, 'target/release/lens'));
const full = argv.includes('--full');
const wrangler = join(root, 'edge/node_modules/.bin/wrangler');
const images = join(root, 'models/fixtures/images');
const photos = ['astronaut.png', 'camera_grey.png', 'chelsea_rgba.png', 'coffee.jpg', 'coins_grey.jpg',
  'rocket.jpg', 'coffee_lossy.webp', 'coffee_palette.gif'];
const work = mkdtempSync(join(tmpdir(), 'lens-edge-'));
const t0 = Date.now();
const log = (...m) => console.log(`[edge ${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...m);
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false', CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_LOG_PATH: join(work, 'wrangler-logs'), NO_COLOR: '1' };
const children = [];

const freePort = () => new Promise((ok) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => ok(p)); }); });
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

function start(name, cmd, args, opts = {}) {
  const child = spawn(cmd, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  child.output = '';
  const keep = (d) => { child.output += d; if (child.output.length > 200_000) child.output = child.output.slice(-100_000); };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  child.name = name;
  children.push(child);
  return child;
}

async function waitFor(url, what, child, ms = 60_000) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}):\n${child.output.slice(-4000)}`);
    try { if ((await fetch(url)).status < 500) return; } catch { /* not yet */ }
    await sleep(200);
  }
  throw new Error(`${what} did not answer ${url} in ${ms} ms:\n${child.output.slice(-4000)}`);
}

const lens = (...args) => execFileSync(lensBin, args, { cwd: root, env, encoding: 'utf8' });
// Local R2 as wrangler itself reads and writes it (the same files `wrangler dev` serves).
const r2 = (...args) => execFileSync(wrangler, ['r2', 'object', ...args, '--local', '--persist-to', state],
  { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });

// --- the models: the origin runs the tiny CLIP's int8 artifact, the edge its text half -------------------
const model = join(root, 'models/fixtures/clip-tiny-quickgelu.int8.lens');
const textModel = join(work, 'clip-text.lens');
lens('models', 'quantize', '--model', join(root, 'models/fixtures/clip-tiny-quickgelu'), '--out', textModel, '--text-only');
const otherText = join(work, 'other-text.lens');
lens('models', 'quantize', '--model', join(root, 'models/fixtures/clip-tiny-gelu'), '--out', otherText, '--text-only');

// --- the origin: auth required, exact index, plain vector search (hybrid weight 0) -------------------------
const data = join(work, 'origin');
const keyOf = (name, scope) => JSON.parse(lens('keys', 'create', '--data', data, '--name', name, '--scope', scope)).key;
const originPort = await freePort();
const origin = `http://127.0.0.1:${originPort}`;
const originArgs = ['serve', '--model', model, '--data', data, '--listen', `127.0.0.1:${originPort}`, '--auth', 'required',
  '--index', 'exact', '--hybrid-weight', '0', '--rate-limit', '1000', '--job-rate-limit', '1000'];
let originProc = start('origin', lensBin, originArgs);
await waitFor(`${origin}/readyz`, 'lens serve', originProc);
const admin = keyOf('ops', 'admin');
const writer = keyOf('ops', 'write');
log('origin ready at', origin);

// --- the edge: wrangler dev on workerd, local R2 and KV under one state directory ----------------------------
const state = join(work, 'state');
r2('put', 'lens-edge/models/clip-text.lens', '--file', textModel);
const edgePort = await freePort();
const edge = `http://127.0.0.1:${edgePort}`;
const debugToken = 'debug-' + sha256(String(Math.random())).slice(0, 16);
const maxUpload = 2_000_000;
const edgeArgs = (o) => ['dev', '--ip', '127.0.0.1', '--port', String(edgePort), '--persist-to', state, '--test-scheduled',
  '--var', `ORIGIN_URL:${o}`, '--var', `ORIGIN_SYNC_KEY:${admin}`, '--var', `DEBUG_TOKEN:${debugToken}`,
  '--var', `MAX_UPLOAD_BYTES:${maxUpload}`, '--log-level', 'info'];
let edgeProc = start('wrangler dev', wrangler, edgeArgs(origin));
await waitFor(`${edge}/healthz`, 'wrangler dev', edgeProc, 120_000);
log('edge ready at', edge);

const auth = (key) => ({ authorization: `Bearer ${key}` });
const debug = async () => (await fetch(`${edge}/v1/_debug/memory`, { headers: auth(debugToken) })).json();
const post = (base, path, body, key) => fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth(key) }, body: JSON.stringify(body) });
const upload = (files, key) => {
  const form = new FormData();
  for (const [name, bytes] of files) form.append('file', new Blob([bytes]), name);
  return fetch(`${edge}/v1/images`, { method: 'POST', headers: auth(key), body: form });
};
const originTotal = async () => (await (await fetch(`${origin}/v1/images?limit=1`, { headers: auth(admin) })).json()).total;
const metric = async (name) => {
  const text = await (await fetch(`${origin}/metrics`, { headers: auth(admin) })).text();
  return text.split('\n').filter((l) => l.startsWith(name)).map((l) => Number(l.split(' ').pop())).reduce((a, b) => a + b, 0);
};
const failures = [];
const check = async (what, f) => {
  try { await f(); log('ok:', what); } catch (e) { failures.push(`${what}: ${e.stack ?? e}`); log('FAILED:', what, e.message); }
};

try {
  await check('7. the answer comes from workerd and the bundle holds no weights', async () => {
    const d = await debug();
    assert.equal(d.user_agent, 'Cloudflare-Workers');
    const wasm = readFileSync(join(root, 'edge/build/index_bg.wasm'));
    assert.ok(wasm.length < 16 << 20, `the Worker's wasm is ${wasm.length} bytes`);
    // The artifact's checksum (its last 32 bytes) is nowhere in the bundle.
    const tail = readFileSync(textModel).subarray(-32);
    assert.equal(wasm.indexOf(tail), -1, 'the text artifact is compiled into the bundle');
    log(`bundle: ${wasm.length} bytes of wasm; wasm memory at start ${d.wasm_memory_bytes} bytes`);
  });

  const bytesOf = Object.fromEntries(photos.map((p) => [p, readFileSync(join(images, p))]));
  await check('1. uploads land in R2 and on the origin (201, then 200), blobs round-trip, 304', async () => {
    const first = await upload([[photos[0], bytesOf[photos[0]]]], writer);
    assert.equal(first.status, 201, await first.clone().text());
    const body = await first.json();
    const id = sha256(bytesOf[photos[0]]).slice(0, 32);
    assert.equal(body.id, id);
    assert.equal(first.headers.get('lens-edge-stored'), '1');
    const again = await upload([[photos[0], bytesOf[photos[0]]]], writer);
    assert.equal(again.status, 200);
    assert.equal(again.headers.get('lens-edge-stored'), '0');
    // The rest in one request.
    const rest = await upload(photos.slice(1).map((p) => [p, bytesOf[p]]), writer);
    assert.equal(rest.status, 201, await rest.clone().text());
    assert.equal((await rest.json()).images.length, photos.length - 1);
    assert.equal(await originTotal(), photos.length);

    const blob = await fetch(`${edge}/v1/images/${id}/blob`, { headers: auth(writer) });
    assert.equal(blob.status, 200);
    assert.equal(blob.headers.get('lens-served-by'), 'edge', 'served from R2');
    assert.equal(blob.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await blob.arrayBuffer()).equals(bytesOf[photos[0]]), 'the blob differs');
    const etag = blob.headers.get('etag');
    const cached = await fetch(`${edge}/v1/images/${id}/blob`, { headers: { ...auth(writer), 'if-none-match': etag } });
    assert.equal(cached.status, 304);
    // Without a key the origin refuses, so R2 does not serve it either.
    assert.equal((await fetch(`${edge}/v1/images/${id}/blob`)).status, 401);
    assert.equal(sha256(r2('get', `lens-edge/images/${id}`, '--pipe')), sha256(bytesOf[photos[0]]), 'R2 holds the bytes');
  });

  await check('2. a non-image, an oversize body and a bad key are refused; R2 and the origin unchanged', async () => {
    const before = await originTotal();
    const text = await upload([['notes.jpg', readFileSync(join(images, 'not_an_image.jpg'))]], writer);
    assert.equal(text.status, 415, await text.clone().text());
    assert.equal((await text.json()).error.code, 'unsupported_format');
    const big = await upload([['big.png', Buffer.alloc(maxUpload + 1, 1)]], writer);
    assert.equal(big.status, 413);
    const fresh = readFileSync(join(images, 'rocket_exif6.jpg'));
    const bad = await upload([['rocket_exif6.jpg', fresh]], 'lens_not-a-key');
    assert.equal(bad.status, 401);
    assert.equal(await originTotal(), before);
    const id = sha256(fresh).slice(0, 32);
    const blob = await fetch(`${edge}/v1/images/${id}/blob`, { headers: auth(admin) });
    assert.equal(blob.status, 404, 'nothing on the origin');
    assert.throws(() => r2('get', `lens-edge/images/${id}`, '--pipe'), 'nothing in R2');
  });

  await check('3. after the scheduled sync the edge holds the origin\'s vectors', async () => {
    const ran = await fetch(`${edge}/__scheduled?cron=${encodeURIComponent('*/5 * * * *')}`);
    assert.equal(ran.status, 200);
    const d = await debug();
    assert.equal(d.last_sync?.error ?? null, null, JSON.stringify(d.last_sync));
    assert.equal(d.index.vectors, await originTotal());
    assert.equal(d.index.vectors, photos.length);
  });

  // Largest difference between an edge score (int8 query and vectors) and the origin's (f32) for the same
  // image: the int8 scan's error (about 1e-3 at 512 dimensions; the tiny fixture has 32).
  const TIE = 0.01;
  let swapped = 0;
  const queries = ['a photo of a cat', 'a rocket launch', 'a cup of coffee', 'an astronaut', 'coins on a table', 'a grey camera'];
  await check('4. edge search = origin search (ids and order), embeddings cos ≥ 0.99, origin counters still', async () => {
    const originResults = [];
    for (const text of queries) {
      const r = await post(origin, '/v1/search', { text, k: 5 }, admin);
      assert.equal(r.status, 200);
      originResults.push((await r.json()).results);
    }
    const originEmbeddings = (await (await post(origin, '/v1/embeddings', { input: queries }, admin)).json()).data.map((d) => d.embedding);
    const searches = await metric('lens_search_seconds_count');
    const textEmbeds = await metric('lens_inference_seconds_count{input="text"');
    for (const [i, text] of queries.entries()) {
      const r = await post(edge, '/v1/search', { text, k: 5 }, writer);
      assert.equal(r.status, 200, await r.clone().text());
      const body = await r.json();
      assert.equal(body.served_by, 'edge');
      // The same ids in the same order, except that two neighbours the origin scores within the int8
      // scan's error (TIE, for the tiny fixture's 32 dimensions) may come in either order.
      const ours = body.results.map((x) => x.id);
      const theirs = originResults[i].map((x) => x.id);
      assert.deepEqual([...ours].sort(), [...theirs].sort(), `ids for "${text}"`);
      for (const [j, id] of ours.entries()) {
        const at = theirs.indexOf(id);
        const gap = Math.abs(originResults[i][at].score - originResults[i][j].score);
        assert.ok(at === j || gap <= TIE, `"${text}": ${id} at ${j}, the origin has it at ${at} (scores ${originResults[i][at].score}, ${originResults[i][j].score})`);
        if (at !== j) swapped += 1;
        assert.ok(Math.abs(body.results[j].score - originResults[i][at].score) <= TIE, `score ${body.results[j].score} vs ${originResults[i][at].score}`);
      }
    }
    const edgeEmbeddings = (await (await post(edge, '/v1/embeddings', { input: queries }, writer)).json()).data.map((d) => d.embedding);
    for (const [i, e] of edgeEmbeddings.entries()) {
      const o = originEmbeddings[i];
      const cos = e.reduce((s, x, j) => s + x * o[j], 0) / Math.hypot(...e) / Math.hypot(...o);
      assert.ok(cos >= 0.99, `cosine ${cos} for "${queries[i]}"`);
    }
    log(`${queries.length} queries: the same ids; ${swapped} placed differently within a score tie of ${TIE}`);
    assert.equal(await metric('lens_search_seconds_count'), searches, 'the origin searched');
    assert.equal(await metric('lens_inference_seconds_count{input="text"'), textEmbeds, 'the origin embedded text');
    // An image query goes to the origin.
    const byImage = await post(edge, '/v1/search', { image_id: originResults[0][0].id, k: 3 }, admin);
    assert.equal(byImage.status, 200);
    assert.equal(byImage.headers.get('lens-served-by'), 'origin');
  });

  await check('8. wasm memory after 50 queries', async () => {
    for (let i = 0; i < 50; i++) {
      const r = await post(edge, '/v1/search', { text: `${queries[i % queries.length]} number ${i}`, k: 10 }, writer);
      assert.equal(r.status, 200);
    }
    const d = await debug();
    log(`after 50 queries: wasm memory ${d.wasm_memory_bytes} bytes, model ${d.model.bytes} bytes loaded in ${d.model.load_ms} ms, ${d.model_loads} load(s)`);
    assert.equal(d.model_loads, 1, 'the model loaded once');
  });

  await check('a panic resets the instance: the next request works and the model loads again', async () => {
    const before = await debug();
    assert.equal((await fetch(`${edge}/v1/_debug/panic`, { method: 'POST' })).status, 401, 'the token is needed');
    const trapped = await fetch(`${edge}/v1/_debug/panic`, { method: 'POST', headers: auth(debugToken) }).catch((e) => e);
    assert.ok(trapped instanceof Error || trapped.status >= 500, `the panic answered ${trapped.status}`);
    const r = await post(edge, '/v1/search', { text: 'a rocket launch', k: 3 }, writer);
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal((await r.json()).results.length, 3);
    const after = await debug();
    assert.equal(after.model_loads, 1, 'a fresh instance, one load');
    assert.ok(after.searches < before.searches, `the counters start again (${before.searches} → ${after.searches})`);
  });

  await check('5. the origin killed: edge search answers, uploads get 502 and store nothing', async () => {
    originProc.kill('SIGKILL');
    await new Promise((ok) => originProc.exitCode !== null ? ok() : originProc.once('exit', ok));
    const r = await post(edge, '/v1/search', { text: 'a rocket launch', k: 3 }, writer);
    assert.equal(r.status, 200);
    assert.equal((await r.json()).results.length, 3);
    const fresh = readFileSync(join(images, 'astronaut_lossless.webp'));
    const up = await upload([['a.webp', fresh]], writer);
    assert.equal(up.status, 502);
    assert.equal((await up.json()).error.code, 'origin_unavailable');
    assert.throws(() => r2('get', `lens-edge/images/${sha256(fresh).slice(0, 32)}`, '--pipe'), 'R2 kept an unacknowledged upload');
  });

  await check('6. a mismatched, then a missing model in R2: 503 model_mismatch', async () => {
    r2('put', 'lens-edge/models/clip-text.lens', '--file', otherText);
    let r = await post(edge, '/v1/search', { text: 'a cat' }, writer);
    assert.equal(r.status, 503, await r.clone().text());
    let e = (await r.json()).error;
    assert.equal(e.code, 'model_mismatch');
    assert.match(e.message, /index holds vectors of/);
    r2('delete', 'lens-edge/models/clip-text.lens');
    r = await post(edge, '/v1/search', { text: 'a cat' }, writer);
    assert.equal(r.status, 503);
    e = (await r.json()).error;
    assert.equal(e.code, 'model_mismatch');
    assert.match(e.message, /no text model/);
    // Put back: searching again (the model loads once more).
    r2('put', 'lens-edge/models/clip-text.lens', '--file', textModel);
    r = await post(edge, '/v1/search', { text: 'a cat', k: 2 }, writer);
    assert.equal(r.status, 200, await r.clone().text());
  });

  if (full) {
    await check('8b. (--full) a full-size ViT-B/32 text artifact: wasm memory ≤ 100 MiB after 50 queries, cold start', async () => {
      const big = arg('full-artifact');
      assert.ok(big, '--full needs --full-artifact FILE (scripts/test-edge.sh --full makes one)');
      r2('put', 'lens-edge/models/full-text.lens', '--file', big);
      edgeProc.kill('SIGTERM');
      await new Promise((ok) => edgeProc.exitCode !== null ? ok() : edgeProc.once('exit', ok));
      edgeProc = start('wrangler dev (full-size model)', wrangler, [...edgeArgs(origin), '--var', 'MODEL_KEY:models/full-text.lens']);
      await waitFor(`${edge}/healthz`, 'wrangler dev', edgeProc, 120_000);
      const started = Date.now();
      const first = await post(edge, '/v1/embeddings', { input: 'a photo of a cat' }, writer);
      const coldMs = Date.now() - started;
      assert.equal(first.status, 200, await first.clone().text());
      assert.equal((await first.json()).data[0].embedding.length, 512);
      const warm = Date.now();
      for (let i = 0; i < 50; i++) {
        const r = await post(edge, '/v1/embeddings', { input: `${queries[i % queries.length]} number ${i}` }, writer);
        assert.equal(r.status, 200);
      }
      const perQuery = (Date.now() - warm) / 50;
      const d = await debug();
      const mib = d.wasm_memory_bytes / 2 ** 20;
      log(`full-size: artifact ${statSync(big).size} bytes; cold start (first query, model read from R2 and loaded) ${coldMs} ms, ` +
        `load ${d.model.load_ms} ms; ${perQuery.toFixed(1)} ms per query after; wasm memory ${mib.toFixed(1)} MiB after 50 queries`);
      assert.ok(mib <= 100, `wasm memory ${mib.toFixed(1)} MiB > 100 MiB`);
      assert.equal(d.model_loads, 1);
    });
  }
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await sleep(500);
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (failures.length) {
    for (const c of children) log(`--- ${c.name} output (last 3000 chars) ---\n${c.output.slice(-3000)}`);
  }
  rmSync(work, { recursive: true, force: true });
}
if (failures.length) {
  console.error(`\n${failures.length} edge check(s) failed:\n${failures.join('\n\n')}`);
  process.exit(1);
}
log('all edge checks passed');
