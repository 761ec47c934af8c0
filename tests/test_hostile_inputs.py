"""Issue 23, hostile input: no command deletes or overwrites what it did not create, and every failure is one
``error:`` line. Data loss first (web build over a foreign folder, writes over device nodes, a model file
swapped between its check and its load, temporaries a kill -9 leaves), then the tracebacks (a huge PNG grid,
hostile IDX headers, --prior-cov and checkpoint contents, Ctrl-C during training, full disks, huge latents).

Most of these run without an export or a training: the refusals come before anything is loaded.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from runtime.errors import VaeEdgeError
from runtime.fileio import atomic_path, write_bytes_atomic, write_npy_stream

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _one_line(err: str) -> str:
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _tree(folder) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>" for p in folder.rglob("*")
    }


# ----------------------------------------------------------------------------------------- 1. web build --out
@pytest.fixture
def artifacts_like(tmp_path):
    """A folder that looks like artifacts/: a trained model and an unrelated file, no site."""
    folder = tmp_path / "artifacts"
    (folder / "vae2d").mkdir(parents=True)
    (folder / "vae2d" / "decoder.keras").write_bytes(b"weeks of training")
    (folder / "notes.txt").write_text("mine")
    return folder


def test_web_build_refuses_to_replace_a_folder_it_did_not_write(
    artifacts_like, tmp_path, monkeypatch, capsys
):
    """`build --artifacts X --out X` and `--out .` exited 0 after deleting everything in the folder."""
    from tools.web.__main__ import main, parse_args

    before = _tree(artifacts_like)
    for argv in (
        ["build", "--artifacts", str(artifacts_like), "--out", str(artifacts_like)],
        ["build", "--artifacts", str(tmp_path / "none"), "--out", str(artifacts_like)],
    ):
        assert main(parse_args(argv)) == 2
        err = _one_line(capsys.readouterr().err)
        assert str(artifacts_like) in err and ("refusing" in err or "holds the --artifacts" in err), err
        assert _tree(artifacts_like) == before
    monkeypatch.chdir(artifacts_like)
    assert main(parse_args(["build", "--artifacts", "../none", "--out", "."])) == 2
    assert "is not empty" in _one_line(capsys.readouterr().err)
    assert _tree(artifacts_like) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts"]  # no staging folder left either


def test_web_build_replaces_only_a_site_it_wrote(tmp_path):
    """An earlier site (its site.json lists its files) may be replaced; one where a file was added may not."""
    from tools.web.build import PAGE_FILES, check_out_folder

    site = tmp_path / "site"
    (site / "runtime").mkdir(parents=True)
    (site / "models" / "m").mkdir(parents=True)
    for name in PAGE_FILES:
        (site / name).write_text("page")
    (site / "models" / "m" / "manifest.json").write_text("{}")
    (site / "models" / "m" / "decoder_int8.wasm").write_bytes(b"\0asm")
    record = {
        "runtime": {"name": "vae-edge-wasm", "files": []},
        "models": [
            {
                "name": "m",
                "manifest": {"path": "models/m/manifest.json"},
                "decoders": {"int8": {"path": "decoder_int8.wasm"}},
            }
        ],
    }
    (site / "site.json").write_text(json.dumps(record))
    check_out_folder(site, tmp_path / "artifacts")  # all of it is the earlier build's: fine
    check_out_folder(tmp_path / "new", tmp_path / "artifacts")
    (tmp_path / "empty").mkdir()
    check_out_folder(tmp_path / "empty")
    (site / "models" / "m" / "my-notes.md").write_text("added by hand")
    with pytest.raises(VaeEdgeError, match=r"did not write \(models/m/my-notes\.md\)"):
        check_out_folder(site)
    (site / "models" / "m" / "my-notes.md").unlink()
    (site / "site.json").write_text("[" * 50_000)  # hostile site.json: not an earlier site
    with pytest.raises(VaeEdgeError, match="no readable site.json"):
        check_out_folder(site)
    with pytest.raises(VaeEdgeError, match="a file, not a folder"):
        check_out_folder(site / "index.html")


# ------------------------------------------------------------------------ 2. writing over non-regular files
def test_atomic_writes_refuse_anything_but_a_regular_file(tmp_path):
    """`sample --out /dev/full` as root replaced the device node with a PNG; a FIFO stands in for it here."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    link_to_fifo = tmp_path / "link-to-pipe"
    link_to_fifo.symlink_to(fifo)
    for target, kind in ((fifo, "a named pipe"), (folder, "a folder"), (link_to_fifo, "a named pipe")):
        with pytest.raises(VaeEdgeError, match=f"is {kind}.*refusing to write over it") as info:
            write_bytes_atomic(target, b"png")
        assert "\n" not in str(info.value)
    assert fifo.is_fifo() and folder.is_dir() and link_to_fifo.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link-to-pipe", "pipe"]
    # A symlink to a regular file is followed, like the shell's >: the file is replaced, the link kept.
    real = tmp_path / "folder" / "real.png"
    real.write_bytes(b"old")
    link = tmp_path / "latest.png"
    link.symlink_to(real)
    write_bytes_atomic(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


def test_sample_refuses_a_device_before_decoding(tmp_path, capsys):
    from runtime.__main__ import main, parse_args

    fifo = tmp_path / "out.png"
    os.mkfifo(fifo)
    argv = ["sample", "--artifacts", str(tmp_path / "none"), "--model", "vae2d", "--out", str(fifo)]
    assert main(parse_args(argv)) == 2
    assert "is a named pipe" in _one_line(capsys.readouterr().err)
    assert fifo.is_fifo()


# ------------------------------------------------------------------ 3. the bytes hashed are the bytes loaded
def test_a_model_swapped_after_its_check_is_never_loaded(exported, tmp_path, monkeypatch):
    """The manifest check hashed the file and the interpreter read it again: a file swapped in between was
    decoded unchecked (13 of 3,000 loads). Here the swap happens as soon as the file has been read once."""
    import builtins
    import io
    import shutil

    from runtime import Decoder, load_manifest

    folder = tmp_path / "export"
    shutil.copytree(exported / "vae2d_corr" / "export", folder)
    m = load_manifest(folder)
    entry = m.select(role="decoder", format="tflite", precision="float32", graph="transpose", batch=1)
    path = folder / entry["path"]
    z = m.prior.sample(3, seed=1)
    expected = Decoder(m, entry).decode(z)
    other = m.select(role="decoder", format="tflite", precision="float16", graph="transpose", batch=1)
    swapped_in = (folder / other["path"]).read_bytes()  # a valid model with the same I/O, other weights

    real_open, opens = builtins.open, []

    def open_then_swap(file, mode="r", *args, **kwargs):
        if os.fspath(file) == str(path) and "r" in mode:
            opens.append(mode)
            if len(opens) == 2:  # the file changes between the first read and any second one
                with real_open(path, "wb") as fh:
                    fh.write(swapped_in)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_then_swap)
    monkeypatch.setattr(io, "open", open_then_swap)  # pathlib reads through io.open
    images = Decoder(m, entry).decode(z)
    assert np.array_equal(images, expected), f"{len(opens)} reads of {path.name}: the swapped file was loaded"
    monkeypatch.undo()
    path.write_bytes(swapped_in)  # the same file swapped before the check is refused, as always
    with pytest.raises(VaeEdgeError, match="the manifest says|sha256"):
        Decoder(m, entry)


# ------------------------------------------------------------------------ 4. temporaries a kill -9 leaves
def test_a_killed_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "digits.npy"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
                import sys, time
                from runtime.fileio import atomic_path
                with atomic_path({str(target)!r}, suffix=".npy") as tmp:
                    tmp.write_bytes(b"x" * 100_000)
                    print("written", flush=True)
                    time.sleep(120)
            """),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "written"
        live = [p.name for p in tmp_path.iterdir()]
        assert len(live) == 1 and live[0].startswith(".digits.npy.") and f"-{writer.pid}." in live[0], live
        write_bytes_atomic(tmp_path / "other.npy", b"x")  # another target's write leaves it alone
        write_bytes_atomic(target, b"first")  # a live writer's temporary is kept
        assert live[0] in [p.name for p in tmp_path.iterdir()]
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    foreign = tmp_path / f".digits.npy.otherhost-{writer.pid}.abcdefgh.npy"  # another machine's: unknowable
    foreign.write_bytes(b"y")
    lookalike = tmp_path / ".digits.npy.mine"  # not the tool's naming: never touched
    lookalike.write_bytes(b"z")
    write_npy_stream(target, (2, 3), "float32", [np.zeros((2, 3))])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["digits.npy", "other.npy", foreign.name, lookalike.name]
    )


# ------------------------------------------------------------------------------------ 5. a huge PNG grid
def test_a_png_grid_beyond_the_limit_is_one_line_suggesting_npy(tmp_path, capsys):
    """-n 10^12 --out x.png died in _ArrayMemoryError (14.6 TiB); the .npy path streams it."""
    from runtime.__main__ import main, parse_args
    from runtime.png import MAX_GRID_IMAGES

    out = tmp_path / "x.png"
    argv = [
        "sample",
        "--artifacts",
        str(tmp_path),
        "--model",
        "vae2d",
        "-n",
        "1000000000000",
        "--out",
        str(out),
    ]
    assert main(parse_args(argv)) == 2
    err = _one_line(capsys.readouterr().err)
    assert f"at most {MAX_GRID_IMAGES} digits" in err and str(tmp_path / "x.npy") in err
    assert not out.exists()


# ----------------------------------------------------------------------------------- 6. training's inputs
def _idx(dims: tuple[int, ...], payload: bytes = b"") -> bytes:
    return bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + payload


@pytest.mark.parametrize(
    "dims, fragment",
    [
        ((65536,) * 4, "4-dimensional IDX header"),  # 65536⁴ = 2⁶⁴: numpy's product wrapped to 0
        ((65536,) * 3, "truncated"),
        ((2,), "x_train has shape"),
    ],
)
def test_a_hostile_idx_header_is_one_line(tmp_path, dims, fragment):
    from runtime.data import IDX_FILES, load_mnist

    for key, stem in IDX_FILES.items():
        good = _idx((1, 28, 28), bytes(784)) if key.startswith("x") else _idx((1,), b"\0")
        (tmp_path / stem).write_bytes(good)
    (tmp_path / IDX_FILES["x_train"]).write_bytes(_idx(dims, bytes(2 if dims == (2,) else 0)))
    with pytest.raises(VaeEdgeError, match=fragment) as info:
        load_mnist(tmp_path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "cov, fragment",
    [
        ("[" * 50_000 + "]" * 50_000, "nested too deeply"),
        ("[[1e-300, 0], [0, 1e-300]]", "numerically singular"),
        ("[[1e6, 0], [0, 1]]", "numerically singular or too wide"),
    ],
    ids=["50000-nested", "1e-300", "1e6"],
)
def test_prior_cov_that_cannot_train_is_refused_at_parse_time(tmp_path, capsys, cov, fragment):
    from train.__main__ import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["--model", "vae2d_corr", "--out", str(tmp_path / "out"), "--prior-cov", cov])
    assert stop.value.code == 2 and fragment in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


def _train(argv: list[str]) -> int:
    from train.__main__ import main, parse_args

    return main(parse_args(argv))


@pytest.mark.parametrize(
    "meta, fragment",
    [
        ({"epoch": -5, "history": []}, "epoch -5"),
        ({"epoch": "x", "history": []}, "epoch 'x'"),
        ({"epoch": 1, "history": 5}, "history '5'"),
        ({"epoch": 2, "history": [{}]}, "1 history rows for 2 epochs"),
        ({"epoch": 1, "history": [{}], "config": {"model": None, "training": 7}}, "configuration"),
    ],
)
def test_resume_from_a_corrupt_checkpoint_is_one_line(tmp_path, capsys, meta, fragment):
    folder = tmp_path / "out" / "vae2d"
    folder.mkdir(parents=True)
    blob = np.frombuffer(json.dumps({"name": "vae2d", **meta}).encode(), np.uint8)
    np.savez(folder / "checkpoint.npz", meta=blob)
    before = _tree(folder)
    rc = _train(
        ["--model", "vae2d", "--resume", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no")]
    )
    err = _one_line(capsys.readouterr().err)
    assert rc == 2 and "is corrupt" in err and fragment in err and "delete it to start over" in err, err
    assert _tree(folder) == before


def test_resume_leaves_a_finished_run_alone(tmp_path, capsys):
    """--resume without a checkpoint trained from scratch over a finished run's files."""
    from train.runset import new_run_id, run_set_record

    folder = tmp_path / "out" / "vae2d"
    folder.mkdir(parents=True)
    for name in ("encoder.keras", "decoder.keras"):
        (folder / name).write_bytes(b"trained for hours: " + name.encode())
    record = run_set_record(folder, new_run_id(), ("encoder.keras", "decoder.keras"))
    (folder / "config.json").write_text(json.dumps({"run_set": record}))
    (folder / "metrics.json").write_text(json.dumps({"run_set": record, "test_neg_elbo": 140.5}))
    before = _tree(folder)
    # no MNIST at that path: a run that has nothing to do must not even need the data
    rc = _train(
        ["--model", "vae2d", "--resume", "--out", str(tmp_path / "out"), "--data", str(tmp_path / "no")]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "holds a finished run" in captured.err and "nothing to do" in captured.err
    assert json.loads(captured.out)["vae2d"]["test_neg_elbo"] == 140.5
    assert _tree(folder) == before


def test_ctrl_c_always_stops_training_and_keeps_the_last_epoch(tmp_path, mnist_path, monkeypatch, capsys):
    """A SIGINT that lands in tqdm's __del__ (the previous epoch's bar, collected when the next one is made)
    was printed as "Exception ignored" and training went on to exit 0 (3 of 8 tries at 13-15 s)."""
    import tqdm.std

    real_del, calls = tqdm.std.tqdm.__del__, []

    def del_with_ctrl_c(self):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler inside this __del__
            sum(range(1000))  # a few bytecodes for the handler to run in
        real_del(self)

    monkeypatch.setattr(tqdm.std.tqdm, "__del__", del_with_ctrl_c)
    # What the process had before (default_int_handler, or SIG_IGN when started in the background by a shell).
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "out"
    argv = ["--model", "vae2d", "--data", str(mnist_path), "--out", str(out), "--epochs", "3"]
    argv += ["--train-limit", "512", "--validation", "0", "--test-limit", "64", "--iw-samples", "0"]
    rc = _train([*argv, "--quiet", "--no-figures", "--precision", "float32"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert calls and rc == 130, err
    assert "the last completed epoch (1)" in err
    with np.load(out / "vae2d" / "checkpoint.npz") as ck:
        assert json.loads(ck["meta"].tobytes())["epoch"] == 1
    assert not (out / "vae2d" / "decoder.keras").exists()
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back


# ------------------------------------------------------------------------------ 7. full disks, huge latents
def test_a_file_size_limit_names_the_file(tmp_path):
    """EFBIG (ulimit -f; Python ignores SIGXFSZ) and ENOSPC carry no file name: the line must name the output."""
    target = tmp_path / "big.npy"
    script = textwrap.dedent(f"""
        import sys
        from runtime.cli import cli_main
        from runtime.fileio import write_bytes_atomic
        sys.exit(cli_main(lambda args: write_bytes_atomic({str(target)!r}, bytes(1 << 20)) and 0)(None))
    """)
    proc = subprocess.run(
        ["bash", "-c", f'ulimit -f 64; exec "{sys.executable}" -c "$0"', script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    err = _one_line(proc.stderr)
    assert f"{target}: File too large (EFBIG)" in err and "ulimit -f" in err, err
    assert sorted(tmp_path.iterdir()) == []  # no temporary left behind


def test_a_full_disk_names_the_file(tmp_path):
    from runtime.errors import os_error_line

    target = tmp_path / "reports" / "check.json"
    with pytest.raises(OSError) as info, atomic_path(target) as tmp, open(tmp, "wb"):
        raise OSError(errno.ENOSPC, "No space left on device")  # what a write() on a full disk raises
    line = os_error_line(info.value)
    assert line.startswith(f"{target}: No space left on device (ENOSPC)") and "free some space" in line
    assert list(target.parent.iterdir()) == []


def test_latents_out_of_range_are_not_called_a_corrupt_file(exported):
    from runtime import Decoder, InvalidInputError, load_manifest

    m = load_manifest(exported / "vae2d_corr" / "export")
    decoder = Decoder.from_manifest(m, precision="float32")
    z = m.prior.sample(3, seed=0)
    z[1] = 1e30
    with pytest.raises(InvalidInputError, match=r"inputs out of range: 1 row\(s\), up to \|1e\+30\|") as info:
        decoder.decode(z)
    assert "corrupt" not in str(info.value)
    assert np.all(np.isfinite(decoder.decode(z[[0, 2]])))


@pytest.mark.parametrize("port", ["70000", "65536", "-1"])
def test_web_serve_port_out_of_range_is_refused_at_parse_time(port, capsys):
    """`serve --port 70000` was an OverflowError traceback from the socket call."""
    from tools.web.__main__ import parse_args

    with pytest.raises(SystemExit) as stop:
        parse_args(["serve", "--port", port])
    assert stop.value.code == 2
    err = _one_line(capsys.readouterr().err)
    assert f"--port: {port} is not an integer from 0 to 65535" in err, err
