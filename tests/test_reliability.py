"""Issue 12, sections 4 and 5: the runtime trusts nothing it loads (manifest schema, paths, model I/O,
interpreter errors, image range, OSError), and decodes any number of latents in bounded memory."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil

import numpy as np
import pytest

from runtime import Decoder, Encoder, InvalidInputError, VaeEdgeError, load_manifest
from runtime.__main__ import main, parse_args
from runtime.backends import ModelLoadError, TFLiteModel
from runtime.bench import bench_all
from runtime.errors import os_error_line
from runtime.manifest import ManifestError
from tools.fuzz.mutate import _tflite_structured


@pytest.fixture
def export_copy(exported, tmp_path):
    for name in ("vae2d_corr", "classifier"):
        shutil.copytree(exported / name, tmp_path / name, ignore=shutil.ignore_patterns("*.keras", "*.npz"))
    return tmp_path


def _edit_manifest(folder, edit):
    path = folder / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m))


def _entry(m: dict, name: str) -> dict:
    return next(a for a in m["artifacts"] if a["path"] == name)


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m.pop("latent_dim"), r"field 'latent_dim' is missing"),
        (
            lambda m: m["artifacts"][0].pop("sha256"),
            r"artifacts\[0\] \(decoder_transpose_float32_b1.tflite\)\.sha256' is missing",
        ),
        (lambda m: m["artifacts"][1].update(batch="4"), r"\.batch' must be int, got str"),
        (
            lambda m: m["artifacts"][2]["inputs"][0].update(shape=[1, -2]),
            r"inputs\[0\]\.shape' must be a list of positive",
        ),
        (
            lambda m: m.update(manifest_version=7),
            r"'manifest_version' is 7; this runtime reads versions 1\.\.2",
        ),
        (lambda m: m.update(artifacts={"a": 1}), r"'artifacts' must be list, got dict"),
        (lambda m: m.update(model="../../evil"), r"'model' '../../evil' is not a plain name"),
    ],
)
def test_manifest_schema_errors_name_the_field(export_copy, edit, fragment):
    folder = export_copy / "vae2d_corr" / "export"
    _edit_manifest(folder, edit)
    with pytest.raises(ManifestError, match=fragment) as info:
        load_manifest(folder)
    assert "\n" not in str(info.value)


def test_paths_outside_the_export_folder_are_refused(export_copy, exported, mnist_path, tmp_path):
    folder = export_copy / "vae2d_corr" / "export"
    name = "decoder_subpixel_int8_b1.tflite"
    outside = export_copy / "outside.tflite"  # a valid copy with the right sha256: only the path is wrong
    shutil.copy(folder / name, outside)
    (folder / "link.tflite").symlink_to(outside)
    pristine = (folder / "manifest.json").read_text()
    for path, why in [
        (f"../../{name}", "not a plain file name"),
        (str(outside), "not a plain file name"),
        ("../outside.tflite", "not a plain file name"),
        (f"../export/{name}", "not a plain file name"),  # back inside, but no manifest export writes has ..
        ("..", "not a plain file name"),
        ("link.tflite", "resolves outside the export folder"),
    ]:
        _edit_manifest(folder, lambda m, p=path: _entry(m, name).update(path=p))
        with pytest.raises(ManifestError, match=why):
            load_manifest(folder)
        (folder / "manifest.json").write_text(pristine)
    # pi-bundle packs what the manifests list: an escaping path stops it before anything is written.
    from tools.pi.bundle import build_bundle

    _edit_manifest(folder, lambda m: _entry(m, name).update(path="link.tflite"))
    out = tmp_path / "bundle.tar.gz"
    with pytest.raises(VaeEdgeError, match="resolves outside"):
        build_bundle(export_copy, str(mnist_path), out)
    assert not out.exists()


def _rewrite(folder, name, data):
    (folder / name).write_bytes(data)
    _edit_manifest(
        folder,
        lambda m: _entry(m, name).update(sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)),
    )


@pytest.mark.parametrize("seed", range(6))
def test_model_whose_io_differs_from_its_manifest_is_refused(export_copy, seed):
    """The hostile case: the file was edited and its sha256 updated; the I/O check still catches it."""
    folder = export_copy / "vae2d_corr" / "export"
    name = "decoder_transpose_int8_b1.tflite"
    rng = np.random.default_rng(seed)
    while True:  # a structured edit of the I/O tensors (not the internal-scale one, which keeps the I/O)
        kind, data = _tflite_structured((folder / name).read_bytes(), rng)
        if kind in ("structured_name", "structured_dtype", "structured_scale", "structured_zero_point"):
            break
    _rewrite(folder, name, data)
    m = load_manifest(folder)
    with pytest.raises(ModelLoadError, match=f"{name} does not match its manifest entry") as info:
        Decoder(m, _entry(m.data, name))
    assert "\n" not in str(info.value), kind


def test_interpreter_errors_name_the_file(export_copy):
    path = export_copy / "vae2d_corr" / "export" / "decoder_subpixel_int8_b1.tflite"
    model = TFLiteModel(path)
    with pytest.raises(InvalidInputError, match=f"{path}.*wants int8 \\(1, 4\\)"):
        model.run_raw([np.zeros((3, 2), np.float32)])
    with pytest.raises(InvalidInputError, match="takes 1 input"):
        model.run_raw([])


def test_nonfinite_outputs_are_refused(export_copy):
    """Weights edited to NaN (sha256 updated, I/O untouched): the outputs are NaN and the runtime says so."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    folder = export_copy / "vae2d_corr" / "export"
    name = "decoder_transpose_float32_b1.tflite"
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray((folder / name).read_bytes()), 0))
    for buf in model.buffers:
        if buf.data is not None and len(buf.data) >= 64:
            buf.data = np.full(len(buf.data) // 4, np.nan, np.float32).view(np.uint8)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    _rewrite(folder, name, bytes(builder.Output()))
    m = load_manifest(folder)
    with pytest.raises(ModelLoadError, match="holds NaN or inf for finite inputs"):
        Decoder(m, _entry(m.data, name)).decode(m.prior.sample(4))


def test_encoder_refuses_images_outside_0_1(exported):
    encoder = Encoder.from_manifest(load_manifest(exported / "vae2d_corr" / "export"))
    images = np.random.default_rng(0).random((3, 28, 28), np.float32)
    with pytest.raises(InvalidInputError, match=r"found \[0, 2[0-9.]+\]; divide 0..255 bytes by 255"):
        encoder.encode(np.floor(images * 255))
    with pytest.raises(InvalidInputError, match=r"found \[-0\.4"):
        encoder.encode(images - 0.5)
    mu, _ = encoder.encode(np.clip(images * 1.0005, 0, 1.0005))  # float16 round-trips overshoot a hair
    assert np.all(np.isfinite(mu))


def test_os_error_line_names_the_path_and_the_fix():
    line = os_error_line(OSError(errno.ENOSPC, "No space left on device", "/data/reports/check.json"))
    assert (
        line.startswith("/data/reports/check.json: No space left on device (ENOSPC)")
        and "free some space" in line
    )
    assert "permissions" in os_error_line(PermissionError(errno.EACCES, "Permission denied", "/x"))
    assert "\n" not in os_error_line(OSError("odd")) and os_error_line(OSError("odd"))


def test_cli_maps_an_oserror_to_one_line(exported, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    out = blocker / "digits.npy"  # its parent is a file: NotADirectoryError / FileExistsError
    code = main(
        parse_args(
            ["sample", "--artifacts", str(exported), "--model", "vae2d_corr", "-n", "3", "--out", str(out)]
        )
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and str(blocker) in err
    assert "Traceback" not in err


def test_streamed_decoding_equals_one_call(exported, tmp_path):
    m = load_manifest(exported / "vae2d_corr" / "export")
    assert np.array_equal(
        np.concatenate(list(m.prior.sample_chunks(1001, seed=3, chunk_rows=97))), m.prior.sample(1001, seed=3)
    )
    decoder = Decoder.from_manifest(m, precision="int8", batch=4)
    z = m.prior.sample(1001, seed=3)
    chunks = list(decoder.decode_iter(m.prior.sample_chunks(1001, seed=3, chunk_rows=250), chunk_rows=250))
    assert max(len(c) for c in chunks) <= 250
    assert np.array_equal(np.concatenate(chunks), decoder.decode(z))
    with pytest.raises(InvalidInputError, match="chunk_rows"):
        next(decoder.decode_iter(z, chunk_rows=0))

    out = tmp_path / "digits.npy"
    args = ["sample", "--artifacts", str(exported), "--model", "vae2d_corr", "-n", "1001", "--seed", "3"]
    assert main(parse_args([*args, "--out", str(out), "--chunk-rows", "300"])) == 0
    assert np.array_equal(np.load(out), decoder.decode(z))
    assert main(parse_args([*args, "--out", str(out), "--dtype", "uint8"])) == 0
    u8 = np.load(out)
    assert u8.dtype == np.uint8 and np.abs(u8 / 255 - decoder.decode(z)).max() <= 0.5 / 255 + 1e-6


def test_check_and_bench_record_a_bad_model_and_go_on(export_copy, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("VAE_EDGE_MNIST", raising=False)
    folder = export_copy / "vae2d_corr" / "export"
    bad = "decoder_subpixel_int8_b1.tflite"
    (folder / bad).write_bytes((folder / bad).read_bytes()[:5000])
    reports = tmp_path / "reports"
    args = [
        "check",
        "--artifacts",
        str(export_copy),
        "--reports",
        str(reports),
        "--samples",
        "40",
        "--model",
        "vae2d_corr",
        "--no-data",  # the data thresholds are not what this test is about
    ]
    assert main(parse_args(args)) == 1
    records = json.loads((reports / "check.json").read_text())["records"]
    by_name = {r["artifact"]: r for r in records}
    assert by_name[bad]["status"] == "error" and "truncated copy" in by_name[bad]["error"]
    assert sum(r["status"] == "ok" for r in records) == len(records) - 1 >= 10
    assert f"FAIL vae2d_corr/{bad}" in capsys.readouterr().err

    jobs = [(str(folder), name, 1, 3, 2, 0) for name in (bad, "decoder_subpixel_int8_b4.tflite")]
    recs = bench_all(jobs)  # each in its own process: the child's ModelLoadError comes back as a record
    assert [r["status"] for r in recs] == ["error", "ok"] and "truncated copy" in recs[0]["error"]
    assert recs[0]["model"] == "vae2d_corr" and recs[1]["p50_us"] > 0
