// Browser runtimes behind one small interface, so the page (app.js) does not care which one the site was
// built with (python -m tools.web build --runtime ...):
//   const rt = await loadRuntime(site.runtime, fetchVerified);
//   const session = await rt.open(modelBytes, manifestEntry);
//   const pixels = await session.run(latentFloat32Array);   // Float32Array(H * W * C), the decoder's image
// Every decoder the build picks takes float latents and returns the image (manifest io "float"): pixel
// probabilities for a sigmoid decoder, values in the model's range otherwise.

// vae-edge-wasm: each decoder is its own WebAssembly module (tools/web/wasm.py) exporting vae_edge_input() and
// vae_edge_output() (pointers into its memory: the float latent in, vae_edge_output_size() floats out, row-major
// H x W x C) and vae_edge_decode(). entry.output says what the output holds: "logits" of a sigmoid decoder (the
// sigmoid is applied here, in double precision, then stored as float32 like every runtime's output), "tanh" (the
// input of a final tanh, applied here alike) or "image" (returned as it is). An int8 module also exports its int8 outputs and the 256 floats they
// dequantize to: the sigmoid of those 256 is taken once, and a decode looks its pixels up (the same values,
// without one Math.exp call per pixel a decode).
function loadVaeEdgeWasm(rt) {
  return {
    name: rt.name,
    version: rt.version,
    async open(bytes, entry) {
      const { instance } = await WebAssembly.instantiate(bytes, {});
      const e = instance.exports;
      const d = e.vae_edge_latent_dim();
      const n = e.vae_edge_output_size();
      const input = new Float32Array(e.memory.buffer, e.vae_edge_input(), d);
      const logits = new Float32Array(e.memory.buffer, e.vae_edge_output(), n);
      const activate = { image: (x) => x, tanh: Math.tanh }[entry.output] ?? ((x) => 1 / (1 + Math.exp(-x)));
      let pixelsOf = () => Float32Array.from(logits, activate);
      if (e.vae_edge_output_int8) {
        const q = new Int8Array(e.memory.buffer, e.vae_edge_output_int8(), n);
        const table = Float32Array.from(new Float32Array(e.memory.buffer, e.vae_edge_dequantized(), 256), activate);
        pixelsOf = () => {
          const pixels = new Float32Array(n);
          for (let i = 0; i < n; i++) pixels[i] = table[q[i] + 128];
          return pixels;
        };
      }
      return {
        async run(z) {
          input.set(z.subarray(0, d));
          e.vae_edge_decode();
          return pixelsOf();
        },
      };
    },
  };
}

function runtimeFile(rt, name) {
  const rec = rt.files.find((f) => f.path === `runtime/${name}`);
  if (!rec) throw new Error(`site.json lists no runtime/${name}; rebuild the site (make web)`);
  return rec;
}

// The import map in index.html pins each module's sha256; the browser refuses a module that differs.
async function importChecked(path) {
  try {
    return await import(path);
  } catch (err) {
    throw new Error(
      `${path.slice(2)} failed to load or failed its sha256 integrity check (${err.message}); rebuild the ` +
        "site (make web) or copy it again",
    );
  }
}

async function loadOrt(rt, fetchVerified, mark) {
  // The WASM binary is fetched and checked against site.json here, then handed to the runtime.
  const [wasm, ort] = await Promise.all([
    fetchVerified(runtimeFile(rt, "ort-wasm-simd-threaded.wasm")),
    importChecked("./runtime/ort.wasm.min.mjs"),
  ]);
  mark("runtime wasm checked");
  ort.env.wasm.wasmBinary = wasm;
  ort.env.wasm.wasmPaths = new URL("./runtime/", location.href).href;
  ort.env.wasm.numThreads = 1; // batch-1 decodes of a tiny graph: threads only add hand-off cost
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  return {
    name: rt.name,
    version: rt.version,
    async open(bytes, entry) {
      const session = await ort.InferenceSession.create(new Uint8Array(bytes), {
        executionProviders: ["wasm"],
        graphOptimizationLevel: "all",
      });
      const inName = session.inputNames[0];
      const outName = session.outputNames[0];
      const dims = entry.inputs[0].shape;
      return {
        async run(z) {
          const out = await session.run({ [inName]: new ort.Tensor("float32", z, dims) });
          return out[outName].data;
        },
      };
    },
  };
}

// TFLite's QUANTIZE of one float32 (round half away from zero), as runtime/latent.py's quantize_float32.
function quantize(v, scale, zeroPoint) {
  const x = Math.fround(v / scale);
  const r = Math.max(-1000, Math.min(1000, Number.isNaN(x) ? 0 : Math.sign(x) * Math.floor(Math.abs(x) + 0.5)));
  return Math.max(-128, Math.min(127, r + zeroPoint));
}

// A split latent (manifest entry latent_split, runtime/latent.py's LatentSplit.encode): the d latents become
// the d int8 grid points and radix times the d remainders, as float32 values the graph's QUANTIZE maps back.
export function encodeSplitLatent(z, split) {
  const { radix, scale, zero_point: zp } = split;
  const s = Math.fround(scale);
  const d = z.length;
  const out = new Float32Array(2 * d);
  for (let i = 0; i < d; ++i) {
    const hi = Math.fround((quantize(z[i], s, zp) - zp) * s);
    out[i] = hi;
    out[d + i] = Math.fround(Math.fround(z[i] - hi) * radix);
  }
  return out;
}

async function loadLiteRt(rt, fetchVerified) {
  // LiteRT.js fetches its own WASM by URL: check it first so a corrupt copy is refused before it runs.
  await fetchVerified(runtimeFile(rt, "litert_wasm_internal.wasm"));
  const lr = await importChecked("./runtime/litert.js");
  await lr.loadLiteRt(new URL("./runtime/litert_wasm_internal.js", location.href).href);
  return {
    name: rt.name,
    version: rt.version,
    async open(bytes, entry) {
      const model = await lr.loadAndCompile(new Uint8Array(bytes), { accelerator: "wasm" });
      const dims = entry.inputs[0].shape;
      return {
        async run(z) {
          const input = new lr.Tensor(entry.latent_split ? encodeSplitLatent(z, entry.latent_split) : z, dims);
          try {
            const outs = await model.run([input]);
            const data = outs[0].toTypedArray();
            outs.forEach((t) => t.delete());
            return data;
          } finally {
            input.delete();
          }
        },
      };
    },
  };
}

export async function loadRuntime(rt, fetchVerified, mark = () => {}) {
  if (rt.name === "vae-edge-wasm") return loadVaeEdgeWasm(rt);
  if (rt.name === "onnxruntime-web") return loadOrt(rt, fetchVerified, mark);
  if (rt.name === "litert") return loadLiteRt(rt, fetchVerified);
  throw new Error(`unknown browser runtime ${rt.name} in site.json; rebuild the site (make web)`);
}
