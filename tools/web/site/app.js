// vae-edge latent explorer: decodes each VAE's latents in the page with the exported decoders (any latent size:
// two dimensions on the pad, a slider for each other one; grey or RGB images of any size).
// Reads site.json (written by python -m tools.web build; its sha256 is pinned in index.html), then per model
// its manifest.json; every file is checked against its sha256 (crypto.subtle) before use, and a mismatch
// stops the page with a visible error. Script modules are pinned by the import map's integrity entries.
// window.vaeEdge exposes decode/bench hooks for tests/test_web.py and python -m tools.web bench.
import { loadRuntime } from "./backends.js";
import { drawImage, displayRange, heat, paint } from "./images.js";
import { IntegrityError, fetchVerified } from "./integrity.js";
import { gaussianStream, latentText, marginalFactor, normalQuantile, zName } from "./prior.js";

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
  models: new Map(), // name -> {name, latentDim, L, cov, sd, image, sessions: {int8, float32}}
  model: null,
  z: [0, 0], // the whole latent, model.latentDim values
  padDims: [0, 1], // the latent dimensions on the pad (x, y); y is null for a 1-D latent
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
  const { image } = state.site.models.find((m) => m.name === name); // shape, range, activation
  const sd = cov.map((row, i) => Math.sqrt(row[i]));
  const model = { name, latentDim: d, L, cov, sd, image, sessions };
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

// The decoder's input: the first latentDim values of z, zeros for any it lacks.
function latent(model, z) {
  return Float32Array.from({ length: model.latentDim }, (_, i) => z[i] ?? 0);
}

// Where the pad and sliders of dimension k end: ±3.5 prior standard deviations, in half units.
function dimRange(model, k) {
  return Math.ceil(3.5 * model.sd[k] * 2) / 2;
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
    $(`time-${precision}`).textContent =
      `${formatMs(ms)} (median ${formatMs(median(state.times[precision]))} of ${state.times[precision].length})`;
  }
  const shown = displayRange(model, out.int8, out.float32); // one mapping for both: they compare by eye
  for (const precision of PRECISIONS) drawImage($(`img-${precision}`), out[precision], model, shown);
  if (state.firstDecodeMs === null) {
    state.firstDecodeMs = performance.now(); // since navigation start: the first image is on screen
    $("first-decode").textContent = `${state.firstDecodeMs.toFixed(0)} ms after page load`;
  }
  const n = out.int8.length;
  const diff = new Float32Array(n);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    diff[i] = Math.abs(out.int8[i] - out.float32[i]);
    max = Math.max(max, diff[i]);
    sum += diff[i];
  }
  if (model.image.shape[2] === 3) {
    // One heat value per pixel: the largest channel difference.
    for (let i = 0; i < n; i += 3) diff[i] = Math.max(diff[i], diff[i + 1], diff[i + 2]);
  }
  drawImage($("img-diff"), diff, model, [0, shown[1] - shown[0]], heat);
  $("diff-stats").textContent = `max ${max.toFixed(4)}, mean ${(sum / n).toFixed(4)}`;
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

// The pad's half-width: one scale on both axes, so the prior's ellipses keep their shape.
function padRange() {
  const [i, j] = state.padDims;
  return Math.max(dimRange(state.model, i), j === null ? 0 : dimRange(state.model, j));
}

// The prior's marginal over the pad's dimensions (i, j) as a lower-triangular factor [[m00, 0], [m10, m11]]
// (for the leading two dimensions: the leading block of L); m10 = m11 = 0 for a 1-D latent.
function padFactor() {
  return marginalFactor(state.model.cov, ...state.padDims);
}

function padGeometry() {
  const size = pad.width;
  const r = padRange();
  return {
    size,
    toPx: (z0, z1) => [((z0 + r) / (2 * r)) * size, ((r - z1) / (2 * r)) * size],
    toZ: (x, y) => [(x / size) * 2 * r - r, r - (y / size) * 2 * r],
  };
}

function drawPad() {
  const dpr = window.devicePixelRatio || 1;
  const css = pad.clientWidth || 300;
  const side = Math.round(css * dpr);
  if (pad.width !== side || pad.height !== side) {
    // Both sides: a new canvas is 300x150, so a 300-pixel-wide pad would otherwise keep its 150 rows.
    pad.width = side;
    pad.height = side;
  }
  const ctx = pad.getContext("2d");
  const { size, toPx } = padGeometry();
  const r = padRange();
  const [i, j] = state.padDims;
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
  // The prior's k-sigma ellipses over the pad's dimensions: {M u : |u| = k}, M = padFactor() (the marginal
  // of a lower-triangular factorisation); for a 1-D latent, its k-sigma bounds.
  const [m00, m10, m11] = padFactor();
  ctx.strokeStyle = dark ? "#6cb2ff" : "#0a66c2";
  for (let k = 1; k <= 3; k++) {
    ctx.globalAlpha = 1 - 0.25 * (k - 1);
    ctx.beginPath();
    if (j === null) {
      for (const sign of [-1, 1]) {
        const [x] = toPx(sign * k * m00, 0);
        ctx.moveTo(x, 0);
        ctx.lineTo(x, size);
      }
    } else {
      for (let n = 0; n <= 96; n++) {
        const t = (2 * Math.PI * n) / 96;
        const u0 = k * Math.cos(t);
        const u1 = k * Math.sin(t);
        const [x, y] = toPx(m00 * u0, m10 * u0 + m11 * u1);
        if (n === 0) ctx.moveTo(x, y);
        else ctx.lineTo(x, y);
      }
    }
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  ctx.fillStyle = dark ? "#aaa" : "#666";
  ctx.font = `${12 * dpr}px system-ui, sans-serif`;
  ctx.fillText(`${zName(i)} →`, size - 40 * dpr, y0 - 6 * dpr);
  if (j !== null) ctx.fillText(`${zName(j)} ↑`, x0 + 6 * dpr, 14 * dpr);
  const [px, py] = toPx(
    Math.max(-r, Math.min(r, state.z[i])),
    j === null ? 0 : Math.max(-r, Math.min(r, state.z[j])),
  );
  ctx.fillStyle = "#e8590c";
  ctx.beginPath();
  ctx.arc(px, py, 7 * dpr, 0, 2 * Math.PI);
  ctx.fill();
}

// A slider for each latent dimension not on the pad (every dimension is decoded).
function buildSliders() {
  const box = $("sliders");
  box.replaceChildren();
  const model = state.model;
  for (let k = 0; k < model.latentDim; k++) {
    if (state.padDims.includes(k)) continue;
    const r = dimRange(model, k);
    const row = document.createElement("div");
    row.className = "slider";
    const label = document.createElement("label");
    label.htmlFor = `z${k}`;
    const value = document.createElement("output");
    value.id = `z${k}-value`;
    value.textContent = state.z[k].toFixed(2);
    label.append(`${zName(k)} `, value);
    const input = Object.assign(document.createElement("input"), {
      id: `z${k}`,
      type: "range",
      min: String(-r),
      max: String(r),
      step: "0.05",
      value: String(state.z[k]),
    });
    input.setAttribute("aria-label", `z${k}`);
    input.addEventListener("input", () => {
      const z = [...state.z];
      z[k] = Number(input.value);
      setLatent(z);
    });
    input.addEventListener("change", () => drawGrid()); // the grid is the cross-section at these values
    row.append(label, input);
    box.append(row);
  }
  box.hidden = box.childElementCount === 0;
}

// The pad's two dimensions (for latents of more than two), picked from two lists; picking the other list's
// dimension swaps them.
function buildAxisPickers() {
  const d = state.model.latentDim;
  $("axes-row").hidden = d <= 2;
  for (const [id, slot] of [["pad-x", 0], ["pad-y", 1]]) {
    const select = $(id);
    select.replaceChildren(...Array.from({ length: d }, (_, k) => new Option(zName(k), String(k))));
    select.value = String(state.padDims[slot]);
  }
}

function setPadDims(x, y) {
  state.padDims = [x, y];
  buildAxisPickers();
  buildSliders();
  setLatent(state.z);
  drawGrid();
}

for (const [id, slot] of [["pad-x", 0], ["pad-y", 1]]) {
  $(id).addEventListener("change", () => {
    const picked = Number($(id).value);
    const dims = [...state.padDims];
    if (dims[1 - slot] === picked) dims[1 - slot] = dims[slot];
    dims[slot] = picked;
    setPadDims(dims[0], dims[1]);
  });
}

function setLatent(z, { render = true } = {}) {
  const d = state.model.latentDim;
  state.z = Array.from({ length: d }, (_, k) => z[k] ?? 0);
  const text = latentText(state.z);
  $("z-text").textContent = text;
  pad.setAttribute("aria-valuetext", text);
  for (let k = 0; k < d; k++) {
    const input = $(`z${k}`);
    if (!input) continue;
    input.value = String(state.z[k]);
    $(`z${k}-value`).textContent = state.z[k].toFixed(2);
  }
  drawPad();
  return render ? requestRender() : null;
}

// The latent with the pad's dimensions at (a, b), the others as they are.
function withPad(a, b) {
  const z = [...state.z];
  const [i, j] = state.padDims;
  z[i] = a;
  if (j !== null) z[j] = b;
  return z;
}

function pointerToLatent(event) {
  const rect = pad.getBoundingClientRect();
  const scale = pad.width / rect.width;
  const { toZ } = padGeometry();
  const r = padRange();
  const [a, b] = toZ((event.clientX - rect.left) * scale, (event.clientY - rect.top) * scale);
  const clamp = (v) => Math.max(-r, Math.min(r, v));
  setLatent(withPad(clamp(a), clamp(b)));
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
  const r = padRange();
  const clamp = (v) => Math.max(-r, Math.min(r, Math.round(v * 1000) / 1000));
  const [i, j] = state.padDims;
  setLatent(withPad(clamp(state.z[i] + move[0]), j === null ? 0 : clamp(state.z[j] + move[1])));
});
window.addEventListener("resize", () => state.model && drawPad());

// ---- prior samples: z = L eps, eps from a seeded PRNG (prior.js) ------------------------------------------

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
  $("sample-info").textContent =
    `sample ${state.samples} of seed ${Number($("seed").value) || 0}: ${latentText(z)}`;
  const rendered = setLatent(z);
  if (d > 2) drawGrid(); // the grid is the cross-section at the new values off the pad
  return rendered;
}
$("sample").addEventListener("click", () => state.model && samplePrior());
$("seed").addEventListener("change", () => {
  state.rng = null;
});

// ---- manifold grid ----------------------------------------------------------------------------------------

// The manifold as train/figures.py draws it: a GRID_N x GRID_N grid of eps at the standard-normal 5-95%
// quantiles (equal prior mass per cell) mapped through the prior's factor over the pad's dimensions, so
// vae2d_corr's grid follows the prior's tilt; the other dimensions stay at their sliders' values (a 1-D latent:
// one row).
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
  const [h, w] = model.image.shape;
  const [i, j] = state.padDims;
  const rows = j === null ? 1 : GRID_N;
  canvas.width = w * GRID_N;
  canvas.height = h * rows;
  canvas.style.aspectRatio = `${canvas.width} / ${canvas.height}`;
  const ctx = canvas.getContext("2d");
  const tile = ctx.createImageData(w, h);
  const axis = Array.from({ length: GRID_N }, (_, k) => normalQuantile(0.05 + (0.9 * k) / (GRID_N - 1)));
  const [m00, m10, m11] = padFactor();
  const t0 = performance.now();
  for (let row = 0; row < rows; row++) {
    for (let col = 0; col < GRID_N; col++) {
      if (token !== gridToken || model !== state.model) return; // superseded
      const e0 = axis[col];
      const e1 = j === null ? 0 : axis[GRID_N - 1 - row];
      const z = withPad(m00 * e0, m10 * e0 + m11 * e1);
      const { pixels } = await enqueue(() => decodeTimed(model, "int8", z));
      paint(tile.data, 0, w, pixels, model, displayRange(model, pixels));
      ctx.putImageData(tile, w * col, h * row);
    }
  }
  const others = state.z.map((v, k) => (state.padDims.includes(k) ? null : `${zName(k)} = ${v.toFixed(2)}`));
  const rest = others.filter((t) => t !== null);
  const fixed = rest.length ? `, ${rest.slice(0, 4).join(", ")}${rest.length > 4 ? ", …" : ""}` : "";
  $("grid-info").textContent =
    `${GRID_N}×${rows} int8 decodes over (${[i, j].filter((k) => k !== null).map(zName).join(", ")}): the ` +
    `prior's factor times ε on the standard-normal 5–95% quantiles (±${axis[GRID_N - 1].toFixed(2)})${fixed}, ` +
    `in ${(performance.now() - t0).toFixed(0)} ms`;
}
$("draw-grid").addEventListener("click", () => state.model && drawGrid());

// ---- model picker -----------------------------------------------------------------------------------------

async function selectModel(name) {
  setStatus(`loading ${name}…`);
  const model = await loadModel(name);
  state.model = model;
  state.rng = null;
  state.times = { int8: [], float32: [] };
  state.z = new Array(model.latentDim).fill(0);
  state.padDims = [0, model.latentDim > 1 ? 1 : null];
  $("model").value = name;
  buildAxisPickers();
  buildSliders();
  $("sample-info").textContent = "";
  await setLatent(state.z);
  const [h, w, c] = model.image.shape;
  setStatus(
    `${name}: latent ${model.latentDim}-D, ${h}×${w}×${c} images, int8 ${model.sessions.int8.entry.path}, ` +
      `float32 ${model.sessions.float32.entry.path}`,
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
  for (const m of state.site.models) {
    const shape = m.image.shape.join("×") !== "28×28×1" ? `, ${m.image.shape.join("×")}` : "";
    $("model").add(new Option(`${m.name} (${m.latent_dim}-D${shape})`, m.name));
  }
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
