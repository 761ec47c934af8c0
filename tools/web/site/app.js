// vae-edge latent explorer: decodes each VAE's latents in the page with the exported decoders.
// Reads site.json (written by python -m tools.web build; its sha256 is pinned in index.html), then per model
// its manifest.json; every file is checked against its sha256 (crypto.subtle) before use, and a mismatch
// stops the page with a visible error. Script modules are pinned by the import map's integrity entries.
// window.vaeEdge exposes decode/bench hooks for tests/test_web.py and python -m tools.web bench.
import { loadRuntime } from "./backends.js";

const $ = (id) => document.getElementById(id);
const PRECISIONS = ["int8", "float32"];
const GRID_N = 15; // manifold grid: GRID_N x GRID_N digits
const KEY_STEP = 0.1;
const TIMES_KEPT = 200;

// vae-edge-wasm builds its int8 decoder twice (tools/web/wasm.py): WebAssembly SIMD, and relaxed SIMD (an int8
// dot product per four multiply-accumulates, the same logits bit for bit). The page runs the relaxed one where
// the engine validates this module, () -> v128 computing i32x4.relaxed_dot_i8x16_i7x16_add_s of three zero
// vectors; ?relaxed=0 keeps the SIMD one.
const V128_ZERO = [0xfd, 0x0c, ...new Array(16).fill(0)];
const RELAXED_SIMD_PROBE = new Uint8Array([
  ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00], // magic, version
  ...[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b], // type section: () -> v128
  ...[0x03, 0x02, 0x01, 0x00], // function section
  ...[0x0a, 0x3d, 0x01, 0x3b, 0x00, ...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x93, 0x02, 0x0b], // code
]);
const RELAXED_SIMD =
  new URLSearchParams(location.search).get("relaxed") !== "0" &&
  (() => {
    try {
      return WebAssembly.validate(RELAXED_SIMD_PROBE);
    } catch {
      return false;
    }
  })();

const state = {
  site: null,
  runtime: null,
  models: new Map(), // name -> {name, latentDim, L, cov, range, sessions: {int8, float32}}
  model: null,
  z: [0, 0, 0],
  decodes: 0,
  times: { int8: [], float32: [] },
  firstDecodeMs: null,
  error: null,
  rng: null,
  samples: 0,
  phases: {}, // milestone -> ms since navigation start (shown to the bench)
  decoderFiles: {}, // precision -> the file each model's decoder of that precision was loaded from (last model)
};

function mark(name) {
  state.phases[name] = Math.round(performance.now());
}

class IntegrityError extends Error {}

function showError(message) {
  state.error = message;
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
  setStatus("stopped: see the error above");
}

function setStatus(text) {
  $("status").textContent = text;
}

async function sha256Hex(buffer) {
  if (!crypto.subtle) {
    throw new IntegrityError(
      "crypto.subtle is unavailable (the page is not in a secure context): serve it on localhost or https",
    );
  }
  const digest = await crypto.subtle.digest("SHA-256", buffer);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

// Fetch a file and check it against {path, sha256}: the bytes are only returned when the digest matches.
async function fetchVerified({ path, sha256 }) {
  const response = await fetch(path);
  if (!response.ok) {
    throw new IntegrityError(`${path}: HTTP ${response.status}; rebuild the site (make web) or copy it again`);
  }
  const bytes = await response.arrayBuffer();
  const actual = await sha256Hex(bytes);
  if (actual !== sha256) {
    throw new IntegrityError(
      `sha256 mismatch for ${path}: expected ${sha256}, got ${actual}. The file is corrupt or was ` +
        "modified, so it was not loaded; rebuild the site (make web) or copy it again.",
    );
  }
  return bytes;
}

// ---- models ---------------------------------------------------------------------------------------------

// A model's manifest and decoders, each checked against its sha256 (the manifest against site.json).
const modelFiles = new Map();
function fetchModelFiles(name) {
  if (!modelFiles.has(name)) {
    modelFiles.set(
      name,
      (async () => {
        const rec = state.site.models.find((m) => m.name === name);
        if (!rec) throw new Error(`model ${name} is not in this site; pick one of the list`);
        const manifest = JSON.parse(new TextDecoder().decode(await fetchVerified(rec.manifest)));
        const decoders = {};
        await Promise.all(
          PRECISIONS.map(async (precision) => {
            // A decoder the build compiled (vae-edge-wasm) is pinned by site.json; one copied from the export,
            // by the model's manifest.
            const relaxed = precision === "int8" && RELAXED_SIMD ? rec.decoders.int8_relaxed : undefined;
            const pinned = relaxed ?? rec.decoders[precision];
            const entry =
              typeof pinned === "object" ? pinned : manifest.artifacts.find((a) => a.path === pinned);
            if (!entry) throw new IntegrityError(`${rec.manifest.path} does not list ${pinned}`);
            if (entry.io !== "float" || entry.output_activation) {
              throw new Error(`${entry.path}: the page runs float-I/O decoders only; rebuild the site (make web)`);
            }
            const bytes = await fetchVerified({ path: `models/${name}/${entry.path}`, sha256: entry.sha256 });
            decoders[precision] = { entry, bytes };
            state.decoderFiles[precision] = entry.path;
          }),
        );
        return { manifest, decoders };
      })(),
    );
  }
  return modelFiles.get(name);
}

async function loadModel(name) {
  if (state.models.has(name)) return state.models.get(name);
  const { manifest, decoders } = await fetchModelFiles(name);
  const sessions = {};
  for (const precision of PRECISIONS) {
    const { entry, bytes } = decoders[precision];
    sessions[precision] = { entry, session: await state.runtime.open(bytes, entry) };
    mark(`${name} ${precision} session`);
  }
  const d = manifest.latent_dim;
  const L = manifest.prior.cholesky;
  const cov = manifest.prior.cov;
  const sd = Math.max(Math.sqrt(cov[0][0]), Math.sqrt(cov[1][1]));
  const model = { name, latentDim: d, L, cov, range: Math.ceil(3.5 * sd * 2) / 2, sessions };
  state.models.set(name, model);
  return model;
}

// One decode at a time: the runtimes' sessions are not re-entrant.
let queue = Promise.resolve();
function enqueue(task) {
  const result = queue.then(task);
  queue = result.catch(() => {});
  return result;
}

function latent(model, z) {
  return Float32Array.from(z.slice(0, model.latentDim));
}

async function decodeTimed(model, precision, z) {
  const { session } = model.sessions[precision];
  const t0 = performance.now();
  const pixels = await session.run(latent(model, z));
  const ms = performance.now() - t0;
  state.decodes += 1;
  return { pixels, ms };
}

// ---- drawing --------------------------------------------------------------------------------------------

function drawImage(canvas, values, colour) {
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const [r, g, b] = colour(values[i]);
    img.data.set([r, g, b, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}
const grey = (p) => {
  const v = Math.round(255 * Math.min(1, Math.max(0, p)));
  return [v, v, v];
};
const heat = (d) => {
  const v = Math.min(1, d * 10);
  return [Math.round(255 * v), Math.round(80 * v), 0];
};

function recordTime(precision, ms) {
  const arr = state.times[precision];
  arr.push(ms);
  if (arr.length > TIMES_KEPT) arr.shift();
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1] : NaN;
}

function formatMs(ms) {
  return ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`;
}

async function renderCurrent() {
  const model = state.model;
  const z = [...state.z];
  const out = {};
  for (const precision of PRECISIONS) {
    const { pixels, ms } = await enqueue(() => decodeTimed(model, precision, z));
    out[precision] = pixels;
    recordTime(precision, ms);
    drawImage($(`img-${precision}`), pixels, grey);
    if (state.firstDecodeMs === null) {
      state.firstDecodeMs = performance.now(); // since navigation start: the first digit is on screen
      $("first-decode").textContent = `${state.firstDecodeMs.toFixed(0)} ms after page load`;
    }
    $(`time-${precision}`).textContent =
      `${formatMs(ms)} (median ${formatMs(median(state.times[precision]))} of ${state.times[precision].length})`;
  }
  const diff = new Float32Array(784);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < 784; i++) {
    diff[i] = Math.abs(out.int8[i] - out.float32[i]);
    max = Math.max(max, diff[i]);
    sum += diff[i];
  }
  drawImage($("img-diff"), diff, heat);
  $("diff-stats").textContent = `max ${max.toFixed(4)}, mean ${(sum / 784).toFixed(4)}`;
}

// Coalesce redraw requests: at most one render in flight, and the latest z wins.
let renderPending = false;
let rendering = null;
function requestRender() {
  renderPending = true;
  if (!rendering) {
    rendering = (async () => {
      try {
        while (renderPending) {
          renderPending = false;
          await renderCurrent();
        }
      } catch (err) {
        showError(`decode failed: ${err.message}`);
      } finally {
        rendering = null;
      }
    })();
  }
  return rendering;
}

// ---- latent pad -----------------------------------------------------------------------------------------

const pad = $("pad");

function padGeometry() {
  const size = pad.width;
  const r = state.model.range;
  return {
    size,
    toPx: (z0, z1) => [((z0 + r) / (2 * r)) * size, ((r - z1) / (2 * r)) * size],
    toZ: (x, y) => [(x / size) * 2 * r - r, r - (y / size) * 2 * r],
  };
}

function drawPad() {
  const dpr = window.devicePixelRatio || 1;
  const css = pad.clientWidth || 300;
  if (pad.width !== Math.round(css * dpr)) {
    pad.width = Math.round(css * dpr);
    pad.height = pad.width;
  }
  const ctx = pad.getContext("2d");
  const { size, toPx } = padGeometry();
  const r = state.model.range;
  const dark = matchMedia("(prefers-color-scheme: dark)").matches;
  ctx.fillStyle = dark ? "#202329" : "#fff";
  ctx.fillRect(0, 0, size, size);
  ctx.lineWidth = dpr;
  ctx.strokeStyle = dark ? "#333" : "#e4e4e4";
  for (let v = -Math.floor(r); v <= r; v++) {
    const [x] = toPx(v, 0);
    const [, y] = toPx(0, v);
    ctx.beginPath();
    ctx.moveTo(x, 0);
    ctx.lineTo(x, size);
    ctx.moveTo(0, y);
    ctx.lineTo(size, y);
    ctx.stroke();
  }
  ctx.strokeStyle = dark ? "#777" : "#999";
  const [x0, y0] = toPx(0, 0);
  ctx.beginPath();
  ctx.moveTo(x0, 0);
  ctx.lineTo(x0, size);
  ctx.moveTo(0, y0);
  ctx.lineTo(size, y0);
  ctx.stroke();
  // The prior's k-sigma ellipses over (z0, z1): {L2 u : |u| = k}, L2 the leading 2x2 block of the Cholesky
  // factor (the marginal of a lower-triangular factorisation).
  const L = state.model.L;
  ctx.strokeStyle = dark ? "#6cb2ff" : "#0a66c2";
  for (let k = 1; k <= 3; k++) {
    ctx.globalAlpha = 1 - 0.25 * (k - 1);
    ctx.beginPath();
    for (let i = 0; i <= 96; i++) {
      const t = (2 * Math.PI * i) / 96;
      const u0 = k * Math.cos(t);
      const u1 = k * Math.sin(t);
      const [x, y] = toPx(L[0][0] * u0, L[1][0] * u0 + L[1][1] * u1);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = dark ? "#aaa" : "#666";
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  ctx.fillText("z₀ →", size - 40 * dpr, y0 - 6 * dpr);
  ctx.fillText("z₁ ↑", x0 + 6 * dpr, 14 * dpr);
  const [px, py] = toPx(
    Math.max(-r, Math.min(r, state.z[0])),
    Math.max(-r, Math.min(r, state.z[1])),
  );
  ctx.fillStyle = "#e8590c";
  ctx.beginPath();
  ctx.arc(px, py, 7 * dpr, 0, 2 * Math.PI);
  ctx.fill();
}

function setLatent(z, { render = true } = {}) {
  const d = state.model.latentDim;
  state.z = [z[0], z[1], d > 2 ? z[2] : 0];
  const shown = state.z.slice(0, d).map((v) => v.toFixed(2));
  $("z-text").textContent = `z = (${shown.join(", ")})`;
  pad.setAttribute("aria-valuetext", `z = (${shown.join(", ")})`);
  if (d > 2) {
    $("z2").value = String(state.z[2]);
    $("z2-value").textContent = state.z[2].toFixed(2);
  }
  drawPad();
  return render ? requestRender() : null;
}

function pointerToLatent(event) {
  const rect = pad.getBoundingClientRect();
  const scale = pad.width / rect.width;
  const { toZ } = padGeometry();
  const r = state.model.range;
  const [z0, z1] = toZ((event.clientX - rect.left) * scale, (event.clientY - rect.top) * scale);
  const clamp = (v) => Math.max(-r, Math.min(r, v));
  setLatent([clamp(z0), clamp(z1), state.z[2]]);
}

pad.addEventListener("pointerdown", (event) => {
  if (!state.model) return;
  pad.setPointerCapture(event.pointerId);
  pad.focus();
  pointerToLatent(event);
});
pad.addEventListener("pointermove", (event) => {
  if (state.model && pad.hasPointerCapture(event.pointerId)) pointerToLatent(event);
});
pad.addEventListener("keydown", (event) => {
  if (!state.model) return;
  const step = event.shiftKey ? 5 * KEY_STEP : KEY_STEP;
  const move = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[
    event.key
  ];
  if (!move) return;
  event.preventDefault();
  const r = state.model.range;
  const clamp = (v) => Math.max(-r, Math.min(r, Math.round(v * 1000) / 1000));
  setLatent([clamp(state.z[0] + move[0]), clamp(state.z[1] + move[1]), state.z[2]]);
});
window.addEventListener("resize", () => state.model && drawPad());

$("z2").addEventListener("input", () => setLatent([state.z[0], state.z[1], Number($("z2").value)]));
$("z2").addEventListener("change", () => drawGrid());

// ---- prior samples: z = L eps, eps from a seeded PRNG (mulberry32 + Box-Muller) ---------------------------

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussianStream(seed) {
  const uniform = mulberry32(seed);
  return () => {
    const u1 = 1 - uniform(); // (0, 1]
    const u2 = uniform();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  };
}

function samplePrior() {
  const model = state.model;
  if (!state.rng) {
    state.rng = gaussianStream(Number($("seed").value) || 0);
    state.samples = 0;
  }
  const d = model.latentDim;
  const eps = Array.from({ length: d }, () => state.rng());
  const z = model.L.map((row) => row.reduce((acc, l, j) => acc + l * eps[j], 0));
  state.samples += 1;
  $("sample-info").textContent = `sample ${state.samples} of seed ${Number($("seed").value) || 0}: z = (${z
    .map((v) => v.toFixed(2))
    .join(", ")})`;
  const rendered = setLatent([z[0], z[1], d > 2 ? z[2] : 0]);
  if (d > 2) drawGrid(); // the grid is the cross-section at the new z2
  return rendered;
}
$("sample").addEventListener("click", () => state.model && samplePrior());
$("seed").addEventListener("change", () => {
  state.rng = null;
});

// ---- manifold grid ----------------------------------------------------------------------------------------

// Standard-normal quantile (Acklam's rational approximation, relative error < 1.2e-9).
function normalQuantile(p) {
  const a = [-39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716, 2.506628277459239];
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572];
  const c = [-0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416];
  const tail = (q) =>
    (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
    ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  if (p < 0.02425) return tail(Math.sqrt(-2 * Math.log(p)));
  if (p > 1 - 0.02425) return -tail(Math.sqrt(-2 * Math.log(1 - p)));
  const q = p - 0.5;
  const r = q * q;
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  );
}

// The manifold as train/figures.py draws it: a GRID_N x GRID_N grid of eps at the standard-normal 5-95%
// quantiles (equal prior mass per cell) mapped through z = L eps, so vae2d_corr's grid follows the prior's
// tilt; z2 (3-D models) stays at the slider's value.
let gridToken = 0;
let gridRun = null; // the latest grid drawing (vaeEdge.idle waits for it)
function drawGrid() {
  gridRun = drawGridNow();
  gridRun.catch((err) => showError(`decode failed: ${err.message}`));
  return gridRun;
}

async function drawGridNow() {
  const model = state.model;
  const token = ++gridToken;
  const canvas = $("grid");
  canvas.width = 28 * GRID_N;
  canvas.height = 28 * GRID_N;
  const ctx = canvas.getContext("2d");
  const tile = ctx.createImageData(28, 28);
  const axis = Array.from({ length: GRID_N }, (_, i) => normalQuantile(0.05 + (0.9 * i) / (GRID_N - 1)));
  const L = model.L;
  const t0 = performance.now();
  for (let row = 0; row < GRID_N; row++) {
    for (let col = 0; col < GRID_N; col++) {
      if (token !== gridToken || model !== state.model) return; // superseded
      const e0 = axis[col];
      const e1 = axis[GRID_N - 1 - row];
      const z = [L[0][0] * e0, L[1][0] * e0 + L[1][1] * e1, state.z[2]];
      const { pixels } = await enqueue(() => decodeTimed(model, "int8", z));
      for (let i = 0; i < 784; i++) {
        const v = Math.round(255 * pixels[i]);
        tile.data.set([v, v, v, 255], 4 * i);
      }
      ctx.putImageData(tile, 28 * col, 28 * row);
    }
  }
  const zs = model.latentDim > 2 ? `, z₂ = ${state.z[2].toFixed(2)}` : "";
  $("grid-info").textContent =
    `${GRID_N}×${GRID_N} int8 decodes of z = L ε, ε on the standard-normal 5–95% quantiles` +
    ` (±${axis[GRID_N - 1].toFixed(2)})${zs}, in ${(performance.now() - t0).toFixed(0)} ms`;
}
$("draw-grid").addEventListener("click", () => state.model && drawGrid());

// ---- model picker -----------------------------------------------------------------------------------------

async function selectModel(name) {
  setStatus(`loading ${name}…`);
  const model = await loadModel(name);
  state.model = model;
  state.rng = null;
  state.times = { int8: [], float32: [] };
  $("model").value = name;
  $("z2-row").hidden = model.latentDim < 3;
  $("sample-info").textContent = "";
  await setLatent([0, 0, 0]);
  setStatus(
    `${name}: latent ${model.latentDim}-D, int8 ${model.sessions.int8.entry.path}, float32 ` +
      `${model.sessions.float32.entry.path}`,
  );
  drawGrid();
}

$("model").addEventListener("change", () =>
  selectModel($("model").value).catch((err) => showError(err.message)),
);

// ---- start --------------------------------------------------------------------------------------------------

async function start() {
  mark("start");
  const pinned = document.querySelector('meta[name="vae-edge-site"]')?.content;
  if (!pinned) throw new Error("index.html has no site.json digest; build the site with make web");
  const siteBytes = await fetchVerified({ path: "site.json", sha256: pinned });
  state.site = JSON.parse(new TextDecoder().decode(siteBytes));
  for (const m of state.site.models) $("model").add(new Option(`${m.name} (${m.latent_dim}-D)`, m.name));
  const wanted = new URLSearchParams(location.search).get("model");
  const first = state.site.models.some((m) => m.name === wanted) ? wanted : state.site.models[0].name;
  // Download and check the first model's files while the runtime's WASM downloads and compiles.
  const files = fetchModelFiles(first);
  files.catch(() => {}); // awaited below; an error is reported from there
  state.runtime = await loadRuntime(state.site.runtime, fetchVerified, mark);
  mark("runtime loaded");
  $("runtime-name").textContent = `${state.runtime.name} ${state.runtime.version} (WASM, 1 thread)`;
  await files;
  mark("model files checked");
  await selectModel(first);
}

const ready = start().catch((err) => {
  showError(err.message);
  throw err;
});
ready.catch(() => {}); // reported on the page; no unhandled rejection in the console

// Hooks for tests and the bench (python -m tools.web bench): plain data in, plain data out.
window.vaeEdge = {
  ready,
  state: () => ({
    model: state.model?.name ?? null,
    z: [...state.z],
    decodes: state.decodes,
    firstDecodeMs: state.firstDecodeMs,
    error: state.error,
    phases: { ...state.phases },
    decoderFiles: { ...state.decoderFiles },
    relaxedSimd: RELAXED_SIMD,
  }),
  selectModel: (name) => selectModel(name),
  idle: async () => {
    await ready.catch(() => {});
    await rendering;
    await gridRun?.catch(() => {});
    await queue;
  },
  // Decode rows of latents (each of the model's latent size) with the model's int8 or float32 decoder.
  decode: async (precision, zs) => {
    const model = state.model;
    const out = [];
    for (const z of zs) out.push(Array.from((await enqueue(() => decodeTimed(model, precision, z))).pixels));
    return out;
  },
  // Time n batch-1 decodes of one latent after `warmup` untimed ones, `chunk` consecutive decodes per timing
  // (performance.now() is coarsened to a few microseconds); returns each chunk's milliseconds per decode.
  bench: (precision, n, warmup, chunk = 1) =>
    enqueue(async () => {
      const model = state.model;
      const { session } = model.sessions[precision];
      const z = latent(model, [0.5, -0.5, 0.25]);
      for (let i = 0; i < warmup; i++) await session.run(z);
      const times = [];
      for (let i = 0; i < n; i += chunk) {
        const t0 = performance.now();
        for (let j = 0; j < chunk; j++) await session.run(z);
        times.push((performance.now() - t0) / chunk);
      }
      return times;
    }),
};
