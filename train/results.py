"""Re-run what README's training table cites: every model for several seeds, then mean and spread per model.

    python -m train.results                                   # make results: seeds 0,1,2, all four models
    python -m train.results --seeds 0 --models vae2d --epochs 5 --out artifacts/probe
    python -m train.results --collect-only                    # summarise runs already under --out

Each run is what ``python -m train --model M --seed S --out OUT/seed-S --resume`` trains (so an interrupted
``make results`` continues where it stopped), with each model's defaults (train/registry.py) unless
``--train-flags`` say otherwise; models and goals are the built-ins' entries in train/registry.py. The summary reads
each run's metrics.json (after ``verify_run_set``) and writes ``<reports>/results.json`` and ``results.md``: per
model the mean, the sample standard deviation and the range over seeds of the test figures, with the machine
named, because a figure moves between machines and seeds and a single run is one draw.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from runtime.cli import cli_main, parser  # noqa: E402
from runtime.errors import VaeEdgeError  # noqa: E402
from runtime.fileio import ensure_writable_dir, write_json_atomic, write_text_atomic  # noqa: E402

from .registry import BUILTINS  # noqa: E402

FIGURES = (
    "test_neg_elbo",
    "test_iw_nll",
    "test_bce",
    "test_kl",
    "validation_neg_elbo",
    "validation_neg_elbo_raw",  # the raw weights' and their moving average's, where the run kept an average
    "validation_neg_elbo_ema",
    "test_accuracy",
)


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma list of seeds ≥ 0") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r}: give distinct seeds ≥ 0")
    return seeds


def _models(text: str) -> list[str]:
    models = [v for v in text.split(",") if v]
    bad = [m for m in models if m not in BUILTINS]
    if bad or not models:
        raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {', '.join(BUILTINS)}")
    return models


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = parser("python -m train.results", __doc__)
    p.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma list (default 0,1,2)")
    p.add_argument(
        "--models",
        type=_models,
        default=list(BUILTINS),
        help=f"comma list of built-in models (default: all of them, {','.join(BUILTINS)})",
    )
    p.add_argument("--out", default="artifacts/results", help="runs go to OUT/seed-S/<model>/")
    p.add_argument("--reports", default="reports", help="results.{json,md} go here (default reports/)")
    p.add_argument("--data", default=None, help="MNIST path (default $VAE_EDGE_MNIST)")
    p.add_argument(
        "--collect-only", action="store_true", help="train nothing; summarise the runs under --out"
    )
    p.add_argument(
        "--train-flags",
        default="",
        help="extra flags for python -m train, as one string (e.g. '--epochs 5 --lr 3e-3'); "
        "they are recorded in the report",
    )
    return p.parse_args(argv)


def train_runs(
    *, seeds: list[int], models: list[str], out: Path, data: str | None, train_flags: list[str]
) -> None:
    """Train every (seed, model) pair that is not complete yet; raise VaeEdgeError on the first failure.

    ``train_flags`` are ``python -m train``'s flags (a bad one exits 2 with its one-line error, as there)."""
    from .flags import parse_args as train_args
    from .flags import train_options
    from .pipeline import train_models

    for seed in seeds:
        for model in models:
            argv = ["--model", model, "--seed", str(seed), "--out", str(out / f"seed-{seed}"), "--resume"]
            argv += ["--data", data] if data else []
            try:
                train_models(**train_options(train_args([*argv, *train_flags])))
            except VaeEdgeError as exc:
                raise VaeEdgeError(
                    f"training {model} with seed {seed} failed: {exc}; rerun to resume it"
                ) from None


@dataclass(frozen=True)
class FigureSummary:
    """One figure over seeds: mean, sample standard deviation (0 for one seed), range and the values."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def sd(self) -> float:
        if len(self.values) < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (len(self.values) - 1))

    def to_json(self) -> dict:
        return {
            "mean": self.mean,
            "sd": self.sd,
            "min": min(self.values),
            "max": max(self.values),
            "values": list(self.values),
        }


@dataclass(frozen=True)
class ModelSummary:
    """One model over seeds: its runs (seed, run id, training settings, weights kept), each figure's summary
    (only figures every run has) and its goal with whether the mean meets it (None: no goal)."""

    runs: tuple[dict, ...]
    figures: dict[str, FigureSummary]
    goal: dict | None

    def to_json(self) -> dict:
        return {
            "runs": list(self.runs),
            "figures": {name: f.to_json() for name, f in self.figures.items()},
            "goal": self.goal,
        }


def summarise(*, seeds: list[int], models: list[str], out: Path) -> dict[str, ModelSummary]:
    """Mean, sample standard deviation and range over seeds of each figure, per model, from metrics.json."""
    import json

    from .runset import verify_run_set

    summary = {}
    for model in models:
        runs = []
        for seed in seeds:
            folder = out / f"seed-{seed}" / model
            run_id = verify_run_set(folder)
            metrics = json.loads((folder / "metrics.json").read_text())
            config = json.loads((folder / "config.json").read_text())
            runs.append(
                {"seed": seed, "run_id": run_id, "training": config.get("training"), "metrics": metrics}
            )
        figures = {}
        for name in FIGURES:
            values = [r["metrics"][name] for r in runs if isinstance(r["metrics"].get(name), int | float)]
            if len(values) == len(runs):
                figures[name] = FigureSummary(tuple(values))
        goal = BUILTINS[model].goal
        met = goal.met(figures[goal.figure].mean) if goal and goal.figure in figures else None
        summary[model] = ModelSummary(
            runs=tuple(
                {**{k: v for k, v in r.items() if k != "metrics"}, "weights": r["metrics"].get("weights")}
                for r in runs
            ),
            figures=figures,
            goal=None
            if goal is None
            else {"figure": goal.figure, "op": goal.op, "value": goal.value, "met": met},
        )
    return summary


def results_markdown(report: dict) -> str:
    def cell(fig, scale=1.0, digits=2):
        if fig is None:
            return "—"
        return f"{fig['mean'] * scale:.{digits}f} ± {fig['sd'] * scale:.{digits}f} ({fig['min'] * scale:.{digits}f}–{fig['max'] * scale:.{digits}f})"

    seeds = ", ".join(map(str, report["seeds"]))
    lines = [
        "# Training results over seeds",
        "",
        f"{report['platform']['cpu']}, {report['platform']['cores']} cores; seeds {seeds}; extra flags: "
        f"`{report['train_flags'] or 'none'}`. Mean ± sample standard deviation (range) over seeds; test split "
        "of 10,000 images evaluated once per run; nats per image.",
        "",
        "| model | test −ELBO | IW-NLL | validation −ELBO | test accuracy | goal |",
        "|---|---|---|---|---|---|",
    ]
    for model, s in report["models"].items():
        f = s["figures"]
        goal = s["goal"]
        goal_text = (
            "—"
            if goal is None
            else f"{goal['figure']} {goal['op']} {goal['value']:g}: {'met' if goal['met'] else '**not met**'}"
        )
        lines.append(
            f"| {model} | {cell(f.get('test_neg_elbo'))} | {cell(f.get('test_iw_nll'))} | "
            f"{cell(f.get('validation_neg_elbo'))} | {cell(f.get('test_accuracy'), 100, 2)} | {goal_text} |"
        )
    for model, s in report["models"].items():
        f = s["figures"]
        if "validation_neg_elbo_ema" in f and "validation_neg_elbo_raw" in f:
            kept = sum(r.get("weights") == "ema" for r in s["runs"])
            gain = [
                a - b
                for a, b in zip(
                    f["validation_neg_elbo_raw"]["values"],
                    f["validation_neg_elbo_ema"]["values"],
                    strict=True,
                )
            ]
            lines.append(
                f"\n{model}: the weights' moving average was kept in {kept} of {len(s['runs'])} runs (validation "
                f"−ELBO raw − average: {', '.join(f'{g:+.3f}' for g in gain)})."
            )
    return "\n".join(lines) + "\n"


@cli_main
def main(args: argparse.Namespace) -> int:
    import shlex

    from runtime.bench import cpu_model

    from .provenance import provenance

    train_flags = shlex.split(args.train_flags)
    out = Path(args.out)
    reports = ensure_writable_dir(args.reports)
    if not args.collect_only:
        train_runs(seeds=args.seeds, models=args.models, out=out, data=args.data, train_flags=train_flags)
    summary = summarise(seeds=args.seeds, models=args.models, out=out)
    report = {
        "seeds": args.seeds,
        "train_flags": args.train_flags,
        "platform": {"cpu": cpu_model(), "cores": os.cpu_count(), **provenance()["platform"]},
        "versions": provenance()["versions"],
        "models": {model: s.to_json() for model, s in summary.items()},
    }
    write_json_atomic(reports / "results.json", report)
    md = results_markdown(report)
    write_text_atomic(reports / "results.md", md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
