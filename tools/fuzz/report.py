"""reports/fuzz.{json,md} from a FuzzResult."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.fileio import atomic_path, ensure_writable_dir

from .harness import CODEGEN_FAILURES, FAILURES, FuzzResult

ORDER = (
    "refused",
    "same_output",
    "accepted",
    "ran",
    "silent_diff_io_same",
    "silent_diff_io_detectable",
    "nonfinite_output",
    "escape_accepted",
    "ran_reference_differs",
    "ran_reference_refused",
    "silently_wrong",
    "out_of_bounds",
    "undefined_behaviour",
    "c_does_not_compile",
    "c_failed",
    "destructive",
    "half_written",
    "refusal_not_one_line",
    "traceback",
    "crash",
    "hang",
)


def write_reports(result: FuzzResult, reports: str | Path) -> tuple[Path, Path]:
    """Both files or neither: each is written to its temporary first and the two are renamed only when both
    are complete, so a full disk while writing fuzz.md leaves no new fuzz.json beside an old fuzz.md."""
    folder = ensure_writable_dir(reports)
    j, m = folder / "fuzz.json", folder / "fuzz.md"
    text = json.dumps(result.to_json(), indent=2, default=lambda o: o.tolist()) + "\n"  # numpy numbers
    with atomic_path(j) as tmp_json, atomic_path(m) as tmp_md:
        tmp_json.write_text(text)
        tmp_md.write_text(markdown(result))
    return j, m


def markdown(result: FuzzResult) -> str:
    outcomes = [o for o in ORDER if any(o in c for c in result.counts.values())]
    outcomes += sorted({o for c in result.counts.values() for o in c} - set(outcomes))
    cfg = result.config
    lines = [
        "# Fuzz: mutated models, manifests, inputs and MNIST files",
        "",
        f"Model fuzzed: {cfg['fuzzed_model']} (+ the classifier when exported) under `{cfg['artifacts']}`; seed "
        f"{cfg['seed']}. Every attempt ran in a worker process (a crash or a hang is counted, then the worker "
        "is restarted). Failure outcomes: "
        + ", ".join(FAILURES)
        + "; for codegen: "
        + ", ".join(CODEGEN_FAILURES)
        + ".",
        "",
        "| target | attempts | " + " | ".join(outcomes) + " | seconds | goal |",
        "|---|---|" + "---|" * len(outcomes) + "---|---|",
    ]
    goals = result.to_json()["goals"]
    for target, c in result.counts.items():
        g = goals.get(target)
        lines.append(
            f"| {target} | {sum(c.values())} | "
            + " | ".join(str(c.get(o, 0)) for o in outcomes)
            + f" | {result.seconds.get(target, 0):.0f} | {'met' if g and g['met'] else 'NOT met'} |"
        )
    lines += [
        "",
        "`silent_diff_io_same`: a mutated model whose sha256 was updated ran, its input and output tensors equal "
        "its manifest entry's, and its output differs from the unmutated model's (e.g. a changed weight): no "
        "I/O check can see it; only the sha256 recorded by the exporter can. `silent_diff_io_detectable`: the same "
        "with tensors that differ from the manifest (the runtime's I/O check must refuse these: goal 0). "
        "Manifest, input and .npz goals: no crash, hang, traceback or multi-line refusal, and no manifest path "
        "outside the export folder accepted (`escape_accepted`). `codegen`: edited .tflite graphs through "
        "python -m firmware_sim.codegen; goal: each refused with one line and its output folder untouched, or "
        "C that builds under ASan/UBSan, runs clean and equals the numpy reference (`ran`); the C of a graph the "
        "reference does not take is still built and run (`ran_reference_refused`).",
        "",
        "## By mutation kind",
        "",
    ]
    for target, kinds in result.by_kind.items():
        lines.append(
            f"**{target}**: "
            + "; ".join(
                f"{k} " + ", ".join(f"{o} {n}" for o, n in sorted(c.items()))
                for k, c in sorted(kinds.items())
            )
        )
        lines.append("")
    lines += ["## Examples", ""]
    for target, by_outcome in result.examples.items():
        for outcome, texts in by_outcome.items():
            for t in texts:
                one = " ".join(t.split())
                lines.append(f"- {target} / {outcome}: {one[:400]}")
    return "\n".join(lines) + "\n"
