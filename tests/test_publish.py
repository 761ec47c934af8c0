"""All or nothing on disk: an export folder is replaced as one set, whatever step fails or is killed."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from export.__main__ import main, parse_args
from runtime import fileio
from runtime.manifest import load_manifest

WRITER = textwrap.dedent(
    """
    import itertools, json, sys, time
    from pathlib import Path
    from runtime.fileio import staged_folder

    target = Path(sys.argv[1])
    for generation in itertools.count(time.monotonic_ns()):
        with staged_folder(target) as staging:
            for i in range(20):
                (staging / f"part{i}.bin").write_bytes(bytes([generation % 256]) * 4096)
            (staging / "set.json").write_text(json.dumps({"generation": generation}))
    """
)


def generation_of(folder) -> int | None:
    """The published set.json's generation, read while a writer may be swapping (no consistency check)."""
    try:
        return json.loads((folder / "set.json").read_text())["generation"]
    except (OSError, ValueError):
        return None


def read_set(folder) -> int | None:
    """The generation every file of the folder belongs to (None before the first); fails if they disagree."""
    if not folder.exists():
        return None
    generation = json.loads((folder / "set.json").read_text())["generation"]
    parts = sorted(folder.glob("part*.bin"))
    assert len(parts) == 20
    assert {p.read_bytes() for p in parts} == {bytes([generation % 256]) * 4096}
    return generation


def test_staged_folder_survives_kill_at_any_moment(tmp_path):
    """A writer republishes a 21-file set in a loop and is killed (SIGKILL) at random moments, 8 times: the
    folder always holds one whole set, and the leftover staging folders are removed by the next run."""
    target = tmp_path / "export"
    env = {**os.environ, "PYTHONPATH": str(fileio.Path(__file__).resolve().parents[1])}
    seen = []
    for kill in range(8):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], env=env)
        started = time.monotonic()
        previous = seen[-1] if seen else None
        while generation_of(target) == previous and time.monotonic() < started + 60:
            time.sleep(0.01)  # wait until this writer has published once (a whole set is there to read)
        time.sleep(0.05 + 0.04 * kill)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen.append(read_set(target))
    assert len(set(seen)) > 1  # the writer did publish while being watched
    with fileio.staged_folder(target) as staging:
        (staging / "set.json").write_text('{"generation": 0}')
    assert not [p for p in tmp_path.iterdir() if fileio.STAGING_MARK in p.name]


def run_classifier_export(root):
    return main(
        parse_args(
            ["--model", "classifier", "--artifacts", str(root), "--batch", "4", "--reports", str(root / "r")]
            + ["--validation-samples", "100", "--quiet"]
        )
    )


def complete_set(folder) -> str:
    """Load the export the way the runtime does and verify every file against the manifest."""
    manifest = load_manifest(folder)
    for entry in manifest.artifacts:
        manifest.verify(entry)
    return manifest.data["created"] + json.dumps([a["sha256"] for a in manifest.artifacts])


@pytest.fixture
def classifier_copy(exported, tmp_path):
    shutil.copytree(exported / "classifier", tmp_path / "classifier")
    # Make the old set recognisable: the new export will differ from it in its "created" stamp.
    relabel(tmp_path / "classifier" / "export", "old")
    return tmp_path


def relabel(folder, label: str) -> None:
    """Overwrite the manifest's "created" stamp: two exports within one second would otherwise share it."""
    path = folder / "manifest.json"
    data = json.loads(path.read_text())
    data["created"] = label
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("step", ["manifest", "swap", "cleanup"])
def test_export_failure_at_each_publish_step_leaves_a_complete_set(
    classifier_copy, monkeypatch, capsys, step
):
    export_dir = classifier_copy / "classifier" / "export"
    old = complete_set(export_dir)

    def fail(*_args, **_kwargs):
        raise OSError(28, "No space left on device (injected)", "x")

    if step == "manifest":
        monkeypatch.setattr("export.pipeline.write_json_atomic", fail)
    elif step == "swap":
        monkeypatch.setattr(fileio, "swap_in", fail)
    else:  # killed after the swap, before the old set is removed: simulate by keeping the leftover
        monkeypatch.setattr(fileio.shutil, "rmtree", lambda *a, **k: None)
    code = run_classifier_export(classifier_copy)
    after = complete_set(export_dir)
    if step == "cleanup":
        assert code == 0 and after != old
        assert [p for p in (classifier_copy / "classifier").iterdir() if fileio.STAGING_MARK in p.name]
        relabel(export_dir, "first")
        after = complete_set(export_dir)
    else:
        assert code == 2 and after == old
        assert "No space left on device (injected)" in capsys.readouterr().err
    monkeypatch.undo()
    assert run_classifier_export(classifier_copy) == 0
    assert complete_set(export_dir) not in (old, after)
    assert not [p for p in (classifier_copy / "classifier").iterdir() if fileio.STAGING_MARK in p.name]
