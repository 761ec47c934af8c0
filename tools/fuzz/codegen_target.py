"""The ``codegen`` fuzz target: the C generator's CLI on structured edits (tools/fuzz/graph_mutate.py) of small
untrained decoders, each C it writes built with ASan/UBSan, run and compared with the numpy reference. Driven by
tools/fuzz/harness.py (``run_fuzz``); needs no export folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from firmware_sim.synthetic import randomized_decoder
from tools.exactness import base_decoder

from . import graph_mutate

# The tools.exactness base decoders the edits start from (one transpose graph, one sub-pixel graph).
CODEGEN_BASES = (0, 1)


def fuzz_codegen(tmp: Path, worker, tally, cfg, progress) -> None:
    """``cfg.codegen_mutations`` structured edits (tools/fuzz/graph_mutate.py) of small untrained decoders,
    each through the C generator's CLI in the worker (worker.run_codegen): refused with one line and the
    output folder untouched, or C that builds under ASan/UBSan, runs clean and equals the reference."""
    rng = np.random.default_rng([cfg.seed, 7])
    work = tmp / "codegen"
    work.mkdir()
    seeds = []  # (graph kind, bytes): each base as converted, and with its numbers redrawn (per-channel too)
    for index in CODEGEN_BASES:
        base = base_decoder(work, index)
        graph = "transpose" if "_transpose_" in base.name else "subpixel"
        seeds += [(graph, base.read_bytes()), (graph, randomized_decoder(base.read_bytes(), rng))]
    out, build = work / "out", work / "build"
    out.mkdir()
    # What the output folder holds before each attempt: an older pair of this name and another model's file.
    pristine = {"fz_decoder.h": b"/* an older header */\n", "fz_decoder.c": b"/* an older source */\n"}
    pristine["other_decoder.c"] = b"/* another model: never touched */\n"

    def reset():
        for p in out.iterdir():
            if p.name not in pristine:
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        for name, data in pristine.items():
            (out / name).write_bytes(data)

    def attempt(graph: str, data: bytes, seed: int) -> tuple[str, str]:
        path = work / f"fz_{graph}_int8_b1.tflite"
        path.write_bytes(data)
        reset()
        status, payload = worker.run("codegen", path=str(path), out=str(out), build=str(build), seed=seed)
        if status == "ok":
            return payload["outcome"], payload["detail"]
        if status == "refused":  # a VaeEdgeError outside the CLI (the worker's own steps)
            return "traceback", str(payload)
        return status, str(payload)

    for k, (graph, data) in enumerate(seeds):
        outcome, detail = attempt(graph, data, k)
        if outcome != "ran":
            raise RuntimeError(
                f"the unmutated codegen seed {k} ({graph}) does not run cleanly: {outcome} {detail}"
            )
    for i in progress(range(cfg.codegen_mutations), cfg.codegen_mutations, "codegen"):
        graph, data = seeds[int(rng.integers(len(seeds)))]
        for _ in range(20):
            try:
                kind, mutated = graph_mutate.mutate_graph(data, rng)
            except Exception:  # the schema refused to pack this edit (a value out of its field's range)
                continue
            if mutated != data:
                break
        else:
            kind, mutated = "none", data
        outcome, detail = attempt(graph, mutated, i)
        tally.add("codegen", f"{kind}:{graph}", outcome, detail)
