"""runtime/: the TensorFlow-free library and CLIs on the tiny exported models (see conftest.exported)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest

from runtime import Decoder, Encoder, InvalidInputError, VaeEdgeError, load_manifest
from runtime.__main__ import main, parse_args
from runtime.backends import ModelLoadError, TFLiteModel
from runtime.png import encode_png
from runtime.quality import frechet_distance, kl_per_image

REPO = Path(__file__).resolve().parents[1]
# Imports of these raise ImportError in the subprocesses below, as on a Raspberry Pi without TensorFlow.
BLOCKER = textwrap.dedent("""
    import sys
    class _Block:
        def __init__(self, names): self.names = names
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.names:
                raise ImportError(f"{{name}} is blocked for this test")
    sys.meta_path.insert(0, _Block({blocked!r}))
""")


def run_blocked(code: str, blocked=("tensorflow", "keras", "tf_keras"), cwd=REPO, extra_path=None):
    env = {**os.environ, "PYTHONPATH": str(extra_path or cwd)}
    script = BLOCKER.format(blocked=set(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def manifest(exported):
    return load_manifest(exported / "vae2d_corr" / "export")


def test_prior_and_decoders(manifest):
    z = manifest.prior.sample(10, seed=1)
    assert np.array_equal(z, manifest.prior.sample(10, seed=1))
    ref = Decoder.from_manifest(manifest, precision="float32", batch=4).decode(z)
    assert ref.shape == (10, 28, 28) and ref.min() >= 0 and ref.max() <= 1
    for fmt, prec in (("tflite", "int8"), ("tflite", "float16"), ("onnx", "int8"), ("onnx", "float32")):
        out = Decoder.from_manifest(manifest, precision=prec, format=fmt, batch=1).decode(z)
        assert np.abs(out - ref).mean() < 0.01, (fmt, prec)
    mu, log_var = Encoder.from_manifest(manifest).encode(ref)
    assert mu.shape == log_var.shape == (10, 2)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.zeros((3, 3), np.float32), r"shape \(n, 2\)"),
        (np.zeros(2, np.float32), r"shape \(n, 2\)"),
        (np.array([[0.0, np.nan]], np.float32), "NaN or inf in 1 row"),
        (np.array([[np.inf, 0.0]]), "NaN or inf"),
        (np.array([["a", "b"]]), "numeric array"),
        (np.zeros((0, 2), np.float32), "empty"),
    ],
)
def test_bad_latents_are_refused(manifest, bad, fragment):
    decoder = Decoder.from_manifest(manifest, precision="int8")
    with pytest.raises(InvalidInputError, match=fragment):
        decoder.decode(bad)
    assert issubclass(InvalidInputError, ValueError)


@pytest.fixture
def export_copy(exported, tmp_path):
    shutil.copytree(exported / "vae2d_corr", tmp_path / "vae2d_corr")
    shutil.copytree(exported / "classifier", tmp_path / "classifier")
    return tmp_path


def test_truncated_and_bit_flipped_models(export_copy):
    folder = export_copy / "vae2d_corr" / "export"
    m = load_manifest(folder)
    path = folder / "decoder_subpixel_int8_b1.tflite"
    data = path.read_bytes()
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(flipped))
    with pytest.raises(ModelLoadError, match="does not match its sha256"):
        Decoder.from_manifest(m, precision="int8")
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="truncated copy"):
        Decoder.from_manifest(m, precision="int8")
    # Straight to the interpreter, with no manifest to catch it: still an error, never a crash.
    for broken in (data[:100], b"\x00" * 64, data[:4] + b"XXXX" + data[8:]):
        path.write_bytes(broken)
        with pytest.raises(ModelLoadError):
            TFLiteModel(path)


def test_manifest_sha_mismatch_and_missing(export_copy):
    folder = export_copy / "vae2d_corr" / "export"
    manifest = json.loads((folder / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["path"] == "decoder_transpose_float32_b1.tflite":
            a["sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="sha256"):
        Decoder.from_manifest(load_manifest(folder), precision="float32", batch=1)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(VaeEdgeError, match="not a valid vae-edge manifest"):
        load_manifest(folder)
    with pytest.raises(VaeEdgeError, match="not found; run python -m export"):
        load_manifest(export_copy / "nowhere")


def test_missing_onnxruntime_gives_clear_error(exported):
    res = run_blocked(
        f"""
        from runtime import load_manifest, Decoder, VaeEdgeError
        m = load_manifest({str(exported / "vae2d_corr" / "export")!r})
        try:
            Decoder.from_manifest(m, precision="int8", format="onnx")
        except VaeEdgeError as exc:
            print("ERR", exc)
    """,
        blocked=("tensorflow", "keras", "onnxruntime"),
    )
    assert res.returncode == 0, res.stderr
    assert "ERR" in res.stdout and "onnxruntime is not installed" in res.stdout


def test_interpreter_fallback_chain(exported):
    res = run_blocked(
        f"""
        from runtime.backends import TFLiteModel
        m = TFLiteModel({str(exported / "vae2d_corr" / "export" / "decoder_transpose_float32_b1.tflite")!r})
        print("BACKEND", m.backend)
    """,
        blocked=("ai_edge_litert", "tflite_runtime"),
    )
    assert res.returncode == 0, res.stderr
    assert "BACKEND tensorflow" in res.stdout
    res = run_blocked(
        f"""
        from runtime.backends import TFLiteModel, ModelLoadError
        try:
            TFLiteModel({str(exported / "vae2d_corr" / "export" / "decoder_transpose_float32_b1.tflite")!r})
        except ModelLoadError as exc:
            print("ERR", exc)
    """,
        blocked=("ai_edge_litert", "tflite_runtime", "tensorflow"),
    )
    assert (
        "ERR no TFLite interpreter is installed" in res.stdout and "pip install ai-edge-litert" in res.stdout
    )


def test_check_and_bench_run_without_tensorflow(exported, mnist_path, tmp_path):
    """The whole check and bench path, from the installed package, with TensorFlow and Keras unimportable."""
    site = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(REPO / "runtime"),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    reports = tmp_path / "reports"
    res = run_blocked(
        f"""
        import sys
        from runtime.__main__ import main, parse_args
        common = ["--artifacts", {str(exported)!r}, "--reports", {str(reports)!r}]
        rc_check = main(parse_args(["check", *common, "--samples", "300", "--data", {str(mnist_path)!r},
                                    "--test-limit", "200"]))
        rc_bench = main(parse_args(["bench", *common, "--invokes", "30", "--batch-invokes", "3", "--threads", "1"]))
        leaked = [m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")]
        print("RC", rc_check, rc_bench, "LEAKED", leaked, "FROM", __import__("runtime").__file__)
    """,
        cwd=tmp_path,
        extra_path=site,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "LEAKED []" in res.stdout and str(site) in res.stdout
    # What pip installs is runtime/pyproject.toml's explicit allowlist, and nothing of the host tooling.
    ships = tomllib.loads((REPO / "runtime" / "pyproject.toml").read_text())["tool"]["vae-edge"]["ships"]
    installed = {p.relative_to(site / "runtime").as_posix() for p in (site / "runtime").rglob("*.py")}
    assert installed == set(ships)
    rc_check, rc_bench = (int(v) for v in res.stdout.split("RC ")[1].split()[:2])
    assert rc_bench == 0
    check = json.loads((reports / "check.json").read_text())
    quantized = [r for r in check["records"] if r["role"] == "quantized"]
    assert len(quantized) == 16
    for r in quantized:
        for key in ("model", "artifact", "precision", "mean_abs_err", "digit_agreement", "neg_elbo_delta"):
            assert key in r
    assert rc_check == (0 if check["passed"] else 1)
    bench = json.loads((reports / "bench.json").read_text())
    assert {"cpu", "cores", "machine", "python"} <= set(bench["platform"])
    assert len(bench["records"]) == 24
    for r in bench["records"]:
        for key in (
            "model",
            "artifact",
            "precision",
            "p50_us",
            "p99_us",
            "throughput_per_s",
            "threads",
            "batch",
        ):
            assert key in r
        assert 0 < r["p50_us"] <= r["p99_us"]
    assert (reports / "check.md").exists() and (reports / "bench.md").exists()


def test_check_fails_when_a_threshold_breaks(exported, tmp_path, monkeypatch, capsys):
    from runtime import check

    monkeypatch.setattr(check, "MEAN_ABS_ERR_MAX", 1e-9)
    rc = main(
        parse_args(
            [
                "check",
                "--artifacts",
                str(exported),
                "--reports",
                str(tmp_path),
                "--samples",
                "200",
                "--no-data",
            ]
        )
    )
    assert rc == 1
    assert "FAIL vae2d_corr/decoder_transpose_int8_b1.tflite: mean abs error" in capsys.readouterr().err


def test_sample_cli_and_example_app(exported, tmp_path):
    out = tmp_path / "s.png"
    assert (
        main(
            parse_args(
                [
                    "sample",
                    "--artifacts",
                    str(exported),
                    "--model",
                    "vae2d_corr",
                    "-n",
                    "4",
                    "--out",
                    str(out),
                ]
            )
        )
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from runtime.examples.generate_digits import main as app_main
    from runtime.examples.generate_digits import parse_args as app_args

    assert (
        app_main(
            app_args(
                [
                    "--export",
                    str(exported / "vae2d_corr" / "export"),
                    "-n",
                    "3",
                    "--count",
                    "2",
                    "--out",
                    str(tmp_path / "digits"),
                    "--seed",
                    "1",
                ]
            )
        )
        == 0
    )
    assert len(list((tmp_path / "digits").glob("*.png"))) == 2


def test_png_encoder_round_trips_through_zlib():
    import zlib

    img = np.linspace(0, 1, 28 * 28).reshape(28, 28)
    png = encode_png(img)
    idat = png[png.index(b"IDAT") + 4 : png.index(b"IEND") - 8]
    raw = zlib.decompress(idat)
    rows = np.frombuffer(raw, np.uint8).reshape(28, 29)
    assert (rows[:, 0] == 0).all() and rows[-1, -1] == 255 and rows[0, 1] == 0


def test_frechet_distance_properties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 8))
    assert abs(frechet_distance(a, a)) < 1e-8
    shifted = frechet_distance(a, a + 1.0)
    assert abs(shifted - 8.0) < 1e-6  # a pure mean shift of 1 in each of 8 dims
    b = rng.normal(scale=2.0, size=(4000, 8))
    assert frechet_distance(a, b) == pytest.approx(8 * (1 - 2) ** 2, rel=0.1)  # tr(I + 4I - 2·2I)


def test_numpy_kl_matches_training_kl():
    from runtime.prior import Prior
    from train.model import kl_divergence

    rng = np.random.default_rng(0)
    mu, lv = rng.normal(size=(20, 2)).astype(np.float32), rng.normal(size=(20, 2)).astype(np.float32)
    prior = Prior.from_cov([[1.0, 0.4], [0.4, 0.5]])
    np.testing.assert_allclose(
        kl_per_image(mu, lv, prior.sigma), np.asarray(kl_divergence(mu, lv, prior)), rtol=1e-4
    )


def test_unwritable_report_dir(exported, tmp_path, capsys):
    blocker = tmp_path / "f"
    blocker.write_text("x")
    assert (
        main(
            parse_args(
                ["bench", "--artifacts", str(exported), "--reports", str(blocker / "r"), "--invokes", "5"]
            )
        )
        == 2
    )
    assert "not writable" in capsys.readouterr().err


def test_quantize_rounds_half_away_from_zero_like_tflite():
    """TFLite's QUANTIZE rounds ties away from zero; numpy's round would send 0.5 to 0 and 2.5 to 2."""
    from runtime.backends import TensorInfo, dequantize, quantize

    info = TensorInfo("z", (6,), "int8", scale=0.5, zero_point=3)
    q = quantize(np.array([0.25, -0.25, 1.25, -1.25, 100.0, -100.0], np.float32), info)
    assert q.tolist() == [4, 2, 6, 0, 127, -128]
    assert dequantize(q, info).tolist() == [0.5, -0.5, 1.5, -1.5, 62.0, -65.5]


def test_dump_one_model_and_nothing_to_dump(exported, tmp_path, capsys):
    """dump --model writes only that model's outputs (int8 stays int8, the split latent encoded); an empty
    folder or an unknown model is one line and exit 2, nothing written."""
    out = tmp_path / "d.npz"
    assert (
        main(parse_args(["dump", "--artifacts", str(exported), "--model", "vae2d_corr", "--out", str(out)]))
        == 0
    )
    with np.load(out) as d:
        assert d.files and all(k.startswith("vae2d_corr::") for k in d.files)
        int8 = [k for k in d.files if "_transpose_int8_b1.tflite" in k or "_subpixel_int8_b1.tflite" in k]
        assert int8 and all(d[k].dtype == np.int8 for k in int8)
    for argv, message in [
        (["--artifacts", str(tmp_path / "empty")], "nothing to dump: no export under"),
        (["--artifacts", str(exported), "--model", "vae9d"], "no model 'vae9d' under"),
    ]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        capsys.readouterr()
        assert main(parse_args(["dump", *argv, "--out", str(tmp_path / "x.npz")])) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "x.npz").exists()
