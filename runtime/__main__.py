"""vae-edge runtime CLI (TensorFlow-free): sample, check quantized decoders, bench latency.

    python -m runtime sample --artifacts artifacts --model vae2d_corr --precision int8 -n 16 --out digits.png
    python -m runtime check --artifacts artifacts --data ../shared/data/mnist.npz --samples 10000
    python -m runtime bench --artifacts artifacts --invokes 1000
    python -m runtime dump --artifacts artifacts --out outputs.npz   # what make pi-check compares across boards
    python -m runtime dump --model vae2d --out vae2d.npz             # one model's outputs

--model takes any model exported under --artifacts (the project's and those brought with python -m export
--decoder; default all of them). check writes reports/check.{json,md} and one PNG per model (float vs each
quantized decoder on the same latents) and exits 1 when a quantized decoder breaks a threshold; bench writes
reports/bench.{json,md} and reports/latency.png. A check or bench that finds no decoder to test exits 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from .cli import cli_main, comma_list, nonnegative_int, parser, positive_int
from .errors import VaeEdgeError
from .fileio import ensure_writable_dir, replaceable_target, write_json_atomic, write_text_atomic
from .vocab import ALL, CLASSIFIER, VAE_MODELS, Format, Precision

BENCH_FORMATS = (Format.TFLITE.value, Format.ONNX.value)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m runtime", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    common.add_argument(
        "--model",
        default=ALL,
        help="a model exported under --artifacts (its manifest's name: the project's or your own), or all "
        "(default: every one there)",
    )
    common.add_argument("--reports", default="reports", help="report folder (default reports/)")
    common.add_argument("--seed", type=nonnegative_int, default=0)

    s = sub.add_parser("sample", parents=[common], help="decode prior samples to a PNG grid")
    s.add_argument("-n", type=positive_int, default=16, help="how many digits")
    s.add_argument("--precision", default=Precision.INT8.value, choices=[p.value for p in Precision])
    s.add_argument("--format", default=Format.TFLITE.value, choices=BENCH_FORMATS)
    s.add_argument(
        "--out",
        default="samples.png",
        help="a .png grid (grey, or RGB for 3-channel images), or an .npy of (n, H, W[, C]) images written as "
        "they are decoded (any -n, bounded memory)",
    )
    s.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "uint8"),
        help=".npy pixels (uint8: the image range mapped onto 0..255)",
    )
    s.add_argument(
        "--chunk-rows", type=positive_int, default=4096, help=".npy: latents decoded per chunk (default 4096)"
    )

    c = sub.add_parser("check", parents=[common], help="quality of every quantized decoder vs float32")
    c.add_argument(
        "--samples", type=positive_int, default=10000, help="prior samples per decoder (default 10000)"
    )
    c.add_argument(
        "--data", default=None, help="MNIST .npz for real test digits and the ELBO (default $VAE_EDGE_MNIST)"
    )
    c.add_argument("--test-limit", type=positive_int, default=None, help="use only the first N test images")
    c.add_argument(
        "--no-data",
        action="store_true",
        help="check without MNIST: the -ELBO and Fréchet-to-real thresholds are then not checked (said so in "
        "the report); without this flag a check that has no data refuses to run",
    )
    c.add_argument(
        "--threads", type=positive_int, default=None, help="interpreter threads (default: all cores)"
    )

    b = sub.add_parser("bench", parents=[common], help="latency and throughput of every decoder")
    b.add_argument(
        "--invokes", type=positive_int, default=1000, help="timed invokes at batch 1 (default 1000)"
    )
    b.add_argument(
        "--batch-invokes", type=positive_int, default=50, help="timed invokes at batch N (default 50)"
    )
    b.add_argument(
        "--threads",
        type=comma_list(positive_int),
        default=None,
        help="comma list of thread counts (default: 1 and all cores)",
    )
    b.add_argument(
        "--formats",
        type=comma_list(str, BENCH_FORMATS),
        default=list(BENCH_FORMATS),
        help=f"comma list of formats to bench (default {','.join(BENCH_FORMATS)})",
    )
    b.add_argument(
        "--no-isolate",
        action="store_true",
        help="bench in this process instead of a fresh one per artifact (peak RSS is then shared)",
    )
    d = sub.add_parser("dump", help="raw outputs of every artifact on fixed inputs (compared across boards)")
    d.add_argument("--artifacts", default="artifacts", help="folder with <model>/export/manifest.json")
    d.add_argument("--out", required=True, help="the .npz to write")
    d.add_argument(
        "--model",
        default=ALL,
        help="one exported model (a VAE, your own or the classifier), or all (default: every one there)",
    )
    for sp in (s, c, b, d):  # subparsers print the same one-line errors as the top-level parser
        sp.error = p.error
    return p.parse_args(argv)


@cli_main
def main(args: argparse.Namespace) -> int:
    return {"sample": cmd_sample, "check": cmd_check, "bench": cmd_bench, "dump": cmd_dump}[args.command](
        args
    )


def cmd_dump(args) -> int:
    import numpy as np

    from .dump import dump_outputs
    from .fileio import atomic_path
    from .manifest import find_manifests

    replaceable_target(args.out)  # before the models run
    found = find_manifests(args.artifacts)
    if not found:
        raise VaeEdgeError(f"nothing to dump: no export under {args.artifacts}; run make export")
    if args.model != ALL and args.model not in found:
        raise VaeEdgeError(
            f"no model {args.model!r} under {args.artifacts}; exported there: {', '.join(sorted(found))} (or {ALL})"
        )
    outputs = dump_outputs(args.artifacts, models=None if args.model == ALL else [args.model])
    if not outputs:
        raise VaeEdgeError(
            f"nothing to dump: {args.model} under {args.artifacts} has no TFLite or ONNX model"
        )
    with atomic_path(args.out, suffix=".npz") as tmp:
        np.savez(tmp, **outputs)
    print(f"{len(outputs)} outputs -> {args.out}", file=sys.stderr)
    return 0


def exported_models(found: dict, errors: dict | None = None) -> list[str]:
    """The VAE names among ``found`` manifests (and unreadable ones in ``errors``): the project's in training
    order, then the others sorted."""
    names = {n for n, m in found.items() if m.kind == "vae"} | {n for n in errors or {} if n != CLASSIFIER}
    return [n for n in VAE_MODELS if n in names] + sorted(names - set(VAE_MODELS))


def manifests_for(artifacts: str, model: str, errors: dict | None = None) -> dict:
    """The VAE manifests under ``artifacts``: every one for ``model == "all"``, else that one (or an error
    naming the models there). With ``errors``, bad manifests are recorded there by model name instead of
    raised."""
    from .manifest import find_manifests

    found = {k: v for k, v in find_manifests(artifacts, errors).items() if v.kind == "vae"}
    exported = exported_models(found, errors)
    if not exported:
        raise VaeEdgeError(
            f"no exported model under {artifacts} (no */export/manifest.json of a VAE); run make export, "
            "python -m export --decoder FILE.keras --name NAME, or copy the artifacts folder"
        )
    if model != ALL and model not in exported:
        raise VaeEdgeError(
            f"no model {model!r} under {artifacts}; exported there: {', '.join(exported)} (or {ALL})"
        )
    names = exported if model == ALL else [model]
    if errors:  # only the models asked for
        for name in [n for n in errors if n not in names]:
            del errors[name]
    return {n: found[n] for n in names if n in found}


def cmd_sample(args) -> int:
    from .manifest import find_manifests
    from .models import Decoder
    from .png import check_grid_pixels, check_grid_size, write_png_grid

    npy = str(args.out).lower().endswith(".npy")
    if not npy:
        check_grid_size(args.n, args.out)  # before anything is decoded: the grid is built in memory
    replaceable_target(args.out)  # a device node or folder at --out: one line before any decoding
    if args.model == ALL:
        exported = exported_models(find_manifests(args.artifacts, {}))
        raise VaeEdgeError(
            f"sample needs one --model ({', '.join(exported) or f'none exported under {args.artifacts}'})"
        )
    m = manifests_for(args.artifacts, args.model)[args.model]
    if npy:
        return sample_npy(args, m)
    check_grid_pixels(args.n, m.image_shape, args.out)
    decoder = Decoder.from_manifest(m, precision=args.precision, format=args.format)
    images = decoder.decode(m.prior.sample(args.n, seed=args.seed), channel_axis=True)
    out = write_png_grid(images, args.out, value_range=m.image_range)
    shown = (
        "grey" if m.image_shape[2] == 1 else "RGB" if m.image_shape[2] == 3 else "grey, channels side by side"
    )
    scaled = "" if m.image_range is not None else " (a linear output: shown from its min..max)"
    print(
        f"{args.n} {'x'.join(map(str, m.image_shape))} images ({shown}) from {decoder.name} -> {out}{scaled}"
    )
    return 0


def sample_npy(args, m) -> int:
    """``sample --out x.npy``: prior samples streamed through the largest-batch decoder into an .npy."""
    import numpy as np

    from .fileio import write_npy_stream
    from .models import Decoder

    batches = [a["batch"] for a in m.find(role="decoder", format=args.format, precision=args.precision)]
    decoder = Decoder.from_manifest(
        m, precision=args.precision, format=args.format, batch=max(batches, default=1)
    )
    chunks = decoder.decode_iter(m.prior.sample_chunks(args.n, args.seed, args.chunk_rows), args.chunk_rows)
    if args.dtype == "uint8":  # round half up; the image range mapped onto 0..255
        if m.image_range is None:
            raise VaeEdgeError(
                f"{m.model} has a linear output (no image range), so its values have no uint8 scale; "
                "pass --dtype float32"
            )
        lo, hi = m.image_range
        chunks = (np.floor(np.clip((c - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8) for c in chunks)
    out = write_npy_stream(args.out, (args.n, *decoder.output_shape()), args.dtype, chunks)
    print(f"{args.n} {'x'.join(map(str, m.image_shape))} images from {decoder.name} -> {out}")
    return 0


def cmd_check(args) -> int:
    import numpy as np

    from . import plots
    from .check import (
        DATA_THRESHOLDS,
        THRESHOLDS,
        check_markdown,
        check_model_or_record,
        coverage,
        model_error_record,
        quantized_decoders,
    )
    from .data import load_mnist, resolve_path
    from .manifest import find_manifests
    from .models import Classifier, Decoder
    from .png import displayable, to_unit

    load_errors: dict = {}
    manifests = manifests_for(args.artifacts, args.model, load_errors)
    if not load_errors and not any(quantized_decoders(m) for m in manifests.values()):
        raise VaeEdgeError(
            f"no quantized decoder to check under {args.artifacts} (--model {args.model}): "
            f"{', '.join(manifests)} list none; re-run python -m export"
        )
    all_manifests = find_manifests(args.artifacts, {})  # a bad VAE manifest is recorded below
    # The classifier and MNIST serve only the models they fit (28x28x1 images; an encoder for the −ELBO). The
    # project's models need the classifier; a user's 28x28x1 decoder without one says it was not measured.
    fits = [n for n, m in manifests.items() if coverage(m, classifier=True, data=False).digits]
    wants_classifier = bool(fits) and CLASSIFIER in all_manifests
    if CLASSIFIER not in all_manifests and any(n in VAE_MODELS for n in fits):
        raise VaeEdgeError(
            f"no classifier export under {args.artifacts}, so digit agreement cannot be checked; run "
            "python -m export --model classifier"
        )
    classifier = (
        Classifier.from_manifest(all_manifests[CLASSIFIER], num_threads=args.threads)
        if wants_classifier
        else None
    )
    wants_data = any(
        c.fd_to_real or c.neg_elbo
        for c in (coverage(m, classifier=classifier is not None, data=True) for m in manifests.values())
    )
    test_images = real_features = None
    unchecked = list(DATA_THRESHOLDS) if args.no_data and wants_data else []
    if wants_data and not args.no_data and not resolve_path(args.data):
        raise VaeEdgeError(
            f"no MNIST test digits (--data or $VAE_EDGE_MNIST), so {' and '.join(DATA_THRESHOLDS)} cannot be "
            "checked; pass --data PATH, or --no-data to check the other thresholds only"
        )
    if wants_data and not args.no_data:
        mnist = load_mnist(args.data, test_only=True)
        test_images = mnist.images("test")[: args.test_limit]
        real_features = classifier.predict(test_images)[1] if classifier is not None else None
    elif unchecked:
        print(f"WARNING --no-data: NOT CHECKED: {', '.join(unchecked)}", file=sys.stderr)
    reports = ensure_writable_dir(args.reports)
    records = [model_error_record(name, exc, args.samples) for name, exc in load_errors.items()]
    for name, m in manifests.items():
        print(
            f"{name}: checking {len(quantized_decoders(m))} quantized decoders on "
            f"{args.samples} prior samples",
            file=sys.stderr,
        )
        recs = check_model_or_record(
            m,
            classifier,
            args.samples,
            args.seed,
            test_images,
            real_features,
            args.threads,
            progress=lambda r: print(
                f"  {r['artifact']}: {'ok' if r['passed'] else 'FAIL'}", file=sys.stderr
            ),
        )
        records += recs
        for line in recs[0].get("not_measured", []):
            print(f"  not measured: {line}", file=sys.stderr)
        if plots.available() and all(r.get("status") != "error" for r in recs):
            z = m.prior.sample(12, seed=args.seed + 7)
            decoded = {
                r["artifact"]: Decoder(m, m.by_path(r["artifact"])).decode(z, channel_axis=True)
                for r in recs
                if r["batch"] == recs[0]["batch"] or r["role"] == "reference"
            }
            ref = decoded[recs[0]["artifact"]]  # a linear output is shown on its float decoder's min..max
            shown = m.image_range or (float(ref.min()), float(ref.max()))
            rows = {name: displayable(np.clip(to_unit(x, shown), 0, 1)) for name, x in decoded.items()}
            plots.decoded_grid(
                rows, reports / f"check_{name}.png", f"{name}: the same latents, float32 vs quantized"
            )
    failed = [r for r in records if not r["passed"]]
    from .bench import platform_info

    write_json_atomic(
        reports / "check.json",
        {
            "thresholds": THRESHOLDS,
            "samples": args.samples,
            "seed": args.seed,
            "platform": platform_info(),
            "records": records,
            "unchecked_thresholds": unchecked,
            "passed": not failed,
        },
    )
    write_text_atomic(
        reports / "check.md",
        check_markdown(records, samples=args.samples, seed=args.seed, unchecked=unchecked),
    )
    print(
        f"check: {len(records) - len(manifests)} quantized decoders, {len(failed)} failed -> {reports / 'check.md'}",
        file=sys.stderr,
    )
    for r in failed:
        print(f"FAIL {r['model']}/{r['artifact']}: {'; '.join(r['failures'])}", file=sys.stderr)
    if unchecked:
        print(f"WARNING --no-data: NOT CHECKED: {', '.join(unchecked)}", file=sys.stderr)
    return 1 if failed else 0


def cmd_bench(args) -> int:
    from . import plots
    from .bench import bench_all, bench_markdown, platform_info

    load_errors: dict = {}
    manifests = manifests_for(args.artifacts, args.model, load_errors)
    threads = sorted({1, os.cpu_count() or 1}) if args.threads is None else args.threads
    formats = set(args.formats)
    jobs = [
        (str(m.folder), a["path"], t, args.invokes, args.batch_invokes, args.seed)
        for m in manifests.values()
        for a in m.artifacts
        if a["role"] == "decoder" and a["format"] in formats
        for t in threads
    ]
    if not jobs and not load_errors:
        raise VaeEdgeError(
            f"no decoder to bench under {args.artifacts} (--model {args.model}, --formats {','.join(args.formats)})"
        )
    print(f"bench: {len(jobs)} runs ({len(threads)} thread settings)", file=sys.stderr)
    records = bench_all(
        jobs,
        isolate=not args.no_isolate,
        progress=lambda r: print(
            f"  {r.get('model', '?')}/{r['artifact']} t{r['threads']}: "
            + (
                f"p50 {r['p50_us']:.0f} µs, {r['throughput_per_s']:.0f}/s" if "error" not in r else r["error"]
            ),
            file=sys.stderr,
        ),
    )
    records += [
        {"model": name, "artifact": "manifest.json", "threads": 0, "status": "error", "error": str(exc)}
        for name, exc in load_errors.items()
    ]
    reports = ensure_writable_dir(args.reports)
    info = platform_info()
    write_json_atomic(reports / "bench.json", {"platform": info, "records": records})
    write_text_atomic(reports / "bench.md", bench_markdown(records, info))
    ok = [r for r in records if "error" not in r]
    if plots.available() and ok:
        plots.latency_bars(
            [r for r in ok if r["batch"] == 1 and r["threads"] == 1],
            reports / "latency.png",
            f"batch 1, 1 thread — {info['cpu']} ({info['machine']})",
        )
    print(f"bench -> {reports / 'bench.md'}", file=sys.stderr)
    return 1 if len(ok) < len(records) else 0


def cli() -> int:
    """Console-script entry point (``vae-edge-runtime check ...`` after ``pip install ./runtime``)."""
    return main(parse_args())


if __name__ == "__main__":
    sys.exit(cli())
