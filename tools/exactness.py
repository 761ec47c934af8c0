"""Seeded search for differences between TFLite Micro, the numpy integer reference and the generated C.

    python -m tools.exactness --reports reports                  # make exactness (about 10 minutes)
    python -m tools.exactness --models-per-op 10 --decoders 2 --inputs 200   # a quick look

Single ops (firmware_sim.synthetic): for each op kind the reference implements, ``--models-per-op`` one-op
models with drawn shapes, scales and zero points (FULLY_CONNECTED, CONV_2D and TRANSPOSE_CONV: a third of them
built on requantization boundaries, where a multiplier derived in float32 instead of TFLM's double lands one
step off), each run on ``--inputs`` inputs in TFLite Micro and in the reference; every output value compared.
Whole decoders: ``--decoders`` int8 decoders (both graphs, several widths and latent sizes, every scale, zero
point, weight and bias drawn anew) generated as C, built for the host under ASan/UBSan (the SSE2 and the
portable inner loops) and compared logit for logit with TFLM and the reference on ``--inputs`` int8 latents
(the corners of the latent cube first). Writes reports/exactness.{json,md}; exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from firmware_sim import TFLM_VERSION
from firmware_sim.synthetic import BOUNDARY_KINDS, SINGLE_OP_KINDS, randomized_decoder, single_op_case
from runtime.cli import cli_main, nonnegative_int, parser, positive_int
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic

DECODER_KIND = "decoder (generated C)"
# (latent size, conv_filters) of the base decoders whose quantization is redrawn: channel counts that take
# each inner-loop variant (SIMD blocks of 16 with and without a remainder, multiples of 4 only)
DECODER_SHAPES = ((2, (8, 16)), (3, (16, 24)), (4, (4, 12)), (2, (16, 32)))
DECODER_GRAPHS = ("transpose", "subpixel")


@dataclass
class KindResult:
    kind: str
    models: int = 0
    inputs: int = 0  # model inputs run (latents for decoders), summed over the models
    values: int = 0  # output values compared (decoders: whole decodes, per build and per comparison)
    differing_models: int = 0
    differing_values: int = 0
    examples: list[str] = field(default_factory=list)  # the first few differing models, described

    def add(self, *, inputs: int, values: int, differing: int, note: str) -> None:
        self.models += 1
        self.inputs += inputs
        self.values += values
        if differing:
            self.differing_models += 1
            self.differing_values += differing
            if len(self.examples) < 5:
                self.examples.append(f"{note}: {differing} values differ")


@dataclass(frozen=True)
class ExactnessResult:
    seed: int
    tflm_version: str
    kinds: tuple[KindResult, ...]
    runtimes: tuple[RuntimeAgreement, ...] = ()

    @property
    def differences(self) -> int:
        return sum(k.differing_values for k in self.kinds)

    @property
    def models(self) -> int:
        return sum(k.models for k in self.kinds)

    def to_json(self) -> dict:
        return {
            "seed": self.seed,
            "tflm_version": self.tflm_version,
            "models": self.models,
            "differences": self.differences,
            "kinds": [asdict(k) for k in self.kinds],
            "litert_vs_tflm": [asdict(r) for r in self.runtimes],
        }


def _arena_bytes(case_model: bytes) -> int:
    """Room for every tensor twice over plus TRANSPOSE_CONV's int32 scratch (4 bytes an output value)."""
    from firmware_sim.graph import _parse

    g = _parse("synthetic", case_model)
    activations = sum(t.nbytes for t in g.tensors if not t.is_constant)
    return 8 * activations + (1 << 16)


def _same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise equality, bit for bit (float outputs compared as their bit patterns)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype == np.float32 or b.dtype == np.float32:
        return a.astype(np.float32).view(np.int32) == b.astype(np.float32).view(np.int32)
    return a == b


def check_single_ops(
    *, seed: int, models_per_op: int, inputs: int, kinds: tuple[str, ...] = SINGLE_OP_KINDS, progress=None
) -> list[KindResult]:
    """Every op kind: ``models_per_op`` drawn models, each on ``inputs`` inputs, TFLM against the reference."""
    from firmware_sim.graph import _parse
    from firmware_sim.reference import IntegerReference
    from firmware_sim.tflm import TflmModel

    results = []
    for kind in kinds:
        rng = np.random.default_rng([seed, SINGLE_OP_KINDS.index(kind)])
        res = KindResult(kind)
        for k in range(models_per_op):
            boundary = kind in BOUNDARY_KINDS and k % 3 == 0
            case = single_op_case(kind, rng, batch=inputs, boundary=boundary)
            tflm = TflmModel(case.model, _arena_bytes(case.model)).run(case.inputs)
            ours = IntegerReference(_parse(f"{kind} #{k}", case.model)).run(case.inputs)
            same = _same(tflm, ours)
            res.add(inputs=inputs, values=same.size, differing=int(same.size - same.sum()), note=case.note)
            if progress is not None:
                progress.update(1)
        results.append(res)
    return results


def base_decoder(out: Path, index: int) -> Path:
    """Base decoder ``index`` (cycling through DECODER_SHAPES x DECODER_GRAPHS): a full-int8 batch-1 decoder
    of the project's architecture, untrained, converted as python -m export converts it; the graph whose
    quantization the search redraws. Written once into ``out``."""
    import keras

    from export.convert import int8_decoder_head, to_tflite
    from runtime.vocab import Precision
    from train.model import VAEConfig, build_decoder, subpixel_decoder_from

    latent, filters = DECODER_SHAPES[index // len(DECODER_GRAPHS) % len(DECODER_SHAPES)]
    graph = DECODER_GRAPHS[index % len(DECODER_GRAPHS)]
    path = out / f"base_l{latent}_f{filters[0]}x{filters[1]}_{graph}_int8_b1.tflite"
    if path.is_file():
        return path
    keras.utils.set_random_seed(latent * 100 + filters[0])
    cfg = VAEConfig(name=f"syn{latent}d", latent_dim=latent, conv_filters=filters)
    decoder = build_decoder(cfg, batch_size=1)
    # Nonzero biases, as after training: with Keras's zero init the converter keeps each ReLU as its own op
    # instead of fusing it into the convolution.
    rng = np.random.default_rng(latent)
    for layer in decoder.layers:
        weights = layer.get_weights()
        if len(weights) == 2:
            layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape).astype(np.float32)])
    model = decoder if graph == "transpose" else subpixel_decoder_from(decoder, cfg, 1)
    calibration = np.random.default_rng(0).normal(size=(64, latent)).astype(np.float32)
    path.write_bytes(int8_decoder_head(to_tflite(model, Precision.INT8, "int8", calibration), "int8"))
    return path


def check_decoders(*, seed: int, decoders: int, inputs: int, work: Path, progress=None) -> KindResult:
    """``decoders`` redrawn decoders as generated C (SSE2 and portable host builds, sanitized) against TFLM
    and the reference, on ``inputs`` latents each."""
    from firmware_sim import measure
    from firmware_sim.codegen import generate

    measure.require_tools()
    rng = np.random.default_rng([seed, 1000])
    res = KindResult(DECODER_KIND)
    for k in range(decoders):
        base = base_decoder(work, k)
        graph = next(g for g in DECODER_GRAPHS if f"_{g}_" in base.name)
        folder = work / f"decoder_{k:03d}"
        folder.mkdir()
        path = folder / f"syn{k:03d}_{graph}_int8_b1.tflite"
        path.write_bytes(randomized_decoder(base.read_bytes(), rng))
        gen = generate(source=path, out=folder / "generated", graph=graph, name=f"syn{k:03d}")
        latent = gen.plan.input_size
        zs = rng.integers(-128, 128, (inputs, latent)).astype(np.int8)
        corners = np.array(np.meshgrid(*[[-128, 127]] * latent)).reshape(latent, -1).T
        zs[: min(len(corners), inputs)] = corners[:inputs]
        differing = 0
        for portable in (False, True):
            check = measure.check_host(gen, path, latents=zs, out=folder, portable=portable)
            differing += check.mismatched_vs_tflm + check.mismatched_vs_reference
        res.add(
            inputs=inputs,
            values=2 * 2 * inputs,  # whole decodes: two builds, each against TFLM and the reference
            differing=differing,
            note=f"{base.name} redrawn #{k}",
        )
        if progress is not None:
            progress.update(1)
    return res


LITERT_KERNELS = {
    "LiteRT builtin reference": "BUILTIN_REF",
    "LiteRT builtin optimized": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "LiteRT XNNPACK": "BUILTIN",
}


@dataclass(frozen=True)
class RuntimeAgreement:
    """How far each LiteRT kernel set is from TFLite Micro on one int8 decoder (int8 logits)."""

    decoder: str
    latents: int
    runtime: str
    differing_logits: int
    logits: int
    max_steps: int


def compare_runtimes(*, tflite: Path, latents: np.ndarray) -> list[RuntimeAgreement]:
    """Decode ``latents`` with TFLM and with each of LiteRT's kernel sets (batch 1, one thread); a kernel set
    that cannot load the graph is left out."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from firmware_sim.tflm import TflmModel, smallest_arena

    data = tflite.read_bytes()
    tflm = TflmModel(data, smallest_arena(data, latents[:1]))
    expected = np.stack([tflm.run(z[None]) for z in latents]).astype(np.int32)
    out = []
    for name, resolver in LITERT_KERNELS.items():
        try:
            it = Interpreter(
                model_content=data,
                num_threads=1,
                experimental_op_resolver_type=getattr(OpResolverType, resolver),
            )
        except ValueError:  # the reference kernels lack DEPTH_TO_SPACE version 2 (the sub-pixel graph)
            continue
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        got = []
        for z in latents:
            it.set_tensor(i, z[None])
            it.invoke()
            got.append(it.get_tensor(o).copy())
        diff = np.abs(np.stack(got).astype(np.int32) - expected)
        out.append(
            RuntimeAgreement(
                f"{tflite.parent.parent.name}/{tflite.name}",  # <model>/export/<file>
                len(latents),
                name,
                int((diff > 0).sum()),
                diff.size,
                int(diff.max()),
            )
        )
    return out


def run_search(*, seed: int, models_per_op: int, decoders: int, inputs: int, work: Path) -> ExactnessResult:
    from tqdm import tqdm

    total = models_per_op * len(SINGLE_OP_KINDS) + decoders
    with tqdm(total=total, desc="exactness", unit="model", disable=None) as bar:
        kinds = check_single_ops(seed=seed, models_per_op=models_per_op, inputs=inputs, progress=bar)
        if decoders:
            kinds.append(check_decoders(seed=seed, decoders=decoders, inputs=inputs, work=work, progress=bar))
    return ExactnessResult(seed, TFLM_VERSION, tuple(kinds))


def markdown(result: ExactnessResult) -> str:
    lines = [
        "# Exactness: TFLite Micro vs the numpy reference vs the generated C",
        "",
        f"`python -m tools.exactness`, seed {result.seed}, tflite-micro {result.tflm_version}. "
        "Single ops: every output value compared; decoders: whole decodes compared (784 logits each, "
        "the SSE2 and the portable C build, each against TFLM and against the reference). Goal: 0 differences.",
        "",
        "| op kind | models | inputs | values compared | differing models | differing values |",
        "|---|---|---|---|---|---|",
    ]
    for k in result.kinds:
        lines.append(
            f"| {k.kind} | {k.models} | {k.inputs} | {k.values} | {k.differing_models} | {k.differing_values} |"
        )
    examples = [f"- {k.kind}: {e}" for k in result.kinds for e in k.examples]
    lines += ["", f"**{result.differences} differences** over {result.models} models."]
    if examples:
        lines += ["", "First differing models:", *examples]
    if result.runtimes:
        lines += [
            "",
            "## LiteRT's kernels against TFLite Micro (exported int8 decoders, batch 1, one thread)",
            "",
            "Not part of the goal: the project reproduces TFLM's bits; these are what a LiteRT user gets.",
            "",
            "| decoder | runtime | latents | logits differing from TFLM | largest difference (int8 steps) |",
            "|---|---|---|---|---|",
        ]
        for r in result.runtimes:
            lines.append(
                f"| {r.decoder} | {r.runtime} | {r.latents} | {r.differing_logits} of {r.logits} "
                f"({100 * r.differing_logits / r.logits:.3f}%) | {r.max_steps} |"
            )
    return "\n".join(lines) + "\n"


def _compare_exported(artifacts: Path, inputs: int, seed: int) -> list[RuntimeAgreement]:
    from firmware_sim.codegen import GRAPHS, resolve_source
    from firmware_sim.graph import load_graph
    from runtime.errors import VaeEdgeError

    folders = sorted(p.parent for p in artifacts.glob("*/export/manifest.json"))
    out = []
    for folder in folders:
        for graph in GRAPHS:
            try:
                path, _, _, _ = resolve_source(folder, graph)
            except VaeEdgeError:
                continue  # not a VAE export (the classifier) or no such graph
            graph_ = load_graph(path)
            dim = graph_.tensors[graph_.inputs[0]].shape[1]
            zs = np.random.default_rng([seed, 2000]).integers(-128, 128, (inputs, dim)).astype(np.int8)
            out += compare_runtimes(tflite=path, latents=zs)
    if not out:
        raise VaeEdgeError(f"no exported int8 decoder under {artifacts}; run make export first")
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m tools.exactness", __doc__)
    p.add_argument("--seed", type=int, default=0, help="seed of every drawn model and input (default 0)")
    p.add_argument("--models-per-op", type=positive_int, default=200, help="one-op models per op kind")
    p.add_argument(
        "--decoders",
        type=nonnegative_int,
        default=20,
        help="redrawn whole decoders compiled as C (0: single ops only)",
    )
    p.add_argument("--inputs", type=positive_int, default=1000, help="inputs per model (default 1000)")
    p.add_argument(
        "--artifacts",
        default=None,
        help="also compare LiteRT's kernels with TFLM on every exported int8 decoder found here (e.g. artifacts)",
    )
    p.add_argument("--reports", default="reports", help="folder for exactness.{json,md}")
    p.add_argument("--work", default=None, help="keep the generated models and C here (default: a temp dir)")
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    reports = ensure_writable_dir(args.reports)
    with tempfile.TemporaryDirectory(prefix="vae-edge-exactness-") as tmp:
        work = ensure_writable_dir(args.work) if args.work else Path(tmp)
        result = run_search(
            seed=args.seed,
            models_per_op=args.models_per_op,
            decoders=args.decoders,
            inputs=args.inputs,
            work=work,
        )
    if args.artifacts:
        result = replace(
            result, runtimes=tuple(_compare_exported(Path(args.artifacts), args.inputs, args.seed))
        )
    write_json_atomic(reports / "exactness.json", result.to_json())
    write_text_atomic(reports / "exactness.md", markdown(result))
    print(
        f"exactness: {result.differences} differing values over {result.models} models "
        f"-> {reports / 'exactness.md'}",
        file=sys.stderr,
    )
    return 0 if result.differences == 0 else 1


if __name__ == "__main__":
    sys.exit(main(parse_args()))
