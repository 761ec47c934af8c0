"""export/: every variant converts, loads and meets its tolerance; the int8 graphs are integer-only with fused
ReLUs; the sub-pixel rewrite is exact; manifest and C array match the files; bad input fails cleanly."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from export import carray
from export.__main__ import main, parse_args
from export.variants import decoder_variants
from runtime.backends import TFLiteModel, open_model
from runtime.fileio import sha256_file
from runtime.latent import LatentSplit
from runtime.models import decoder_pixels
from runtime.vocab import ArtifactSpec
from train.model import PRESETS, build_decoder, subpixel_decoder_from

INT_TYPES = {"int8", "int32"}


@pytest.fixture(scope="module")
def manifest(exported):
    return json.loads((exported / "vae2d_corr" / "export" / "manifest.json").read_text())


def export_dir(exported):
    return exported / "vae2d_corr" / "export"


def test_every_variant_exported_and_validated(manifest):
    names = {a["path"] for a in manifest["artifacts"]}
    for v in decoder_variants((1, 4)):
        assert v.filename in names, v.filename
    for a in manifest["artifacts"]:
        for key in ("path", "format", "precision", "io", "graph", "batch", "sha256", "size_bytes"):
            assert key in a, (a["path"], key)
        if a["format"] == "c":
            continue
        assert a["validation"]["passed"] and a["validation"]["samples"] >= 1000
    assert manifest["prior"]["cov"] == [[1.0, 0.4], [0.4, 0.5]]
    assert manifest["calibration"]["samples"] >= 500


def test_artifacts_reproduce_keras_within_tolerance(exported, manifest):
    """Independently of the exporter's own check: run each decoder against Keras on fresh prior samples, within
    the bounds its weights give on those samples."""
    from export.bounds import DecoderBounds
    from export.convert import LOGIT_CLIP

    cfg = PRESETS["vae2d_corr"]
    decoder = keras.models.load_model(exported / "vae2d_corr" / "decoder.keras")
    z = cfg.prior.sample(64, seed=99)
    ref = np.asarray(decoder(z))
    # The bounds on these latents; the calibration ranges from the prior, clipped as export clips them.
    calibration = np.clip(cfg.prior.sample(2000, seed=98), -3, 3)
    bounds = DecoderBounds(decoder, subpixel_decoder_from(decoder, cfg, 4), z, calibration, LOGIT_CLIP)
    for a in manifest["artifacts"]:
        if a["role"] != "decoder" or a["format"] == "c":
            continue
        model = open_model(export_dir(exported) / a["path"])
        x = LatentSplit.from_json(a["latent_split"]).encode(z) if "latent_split" in a else z
        raw = np.concatenate([model.run([x[i : i + a["batch"]]])[0] for i in range(0, 64, a["batch"])])
        out = decoder_pixels(raw, a.get("output_activation"))
        err = np.abs(out - ref)
        tolerance = bounds.tolerance(ArtifactSpec.from_entry(a))
        assert not tolerance.failures(max_abs_err=err.max(), mean_abs_err=err.mean()), a["path"]


def test_full_int8_graph_is_integer_only_with_fused_relu(exported, manifest):
    int8 = [a for a in manifest["artifacts"] if a["format"] == "tflite" and a["precision"] == "int8"]
    assert len(int8) == 8
    for a in int8:
        ops = TFLiteModel(export_dir(exported) / a["path"], delegates=False).op_details()
        names = [op["op"] for op in ops]
        assert "RELU" not in names, a["path"]
        inner = ops if a["io"] == "int8" else ops[1:-2]
        if a["io"] == "float":
            # int8 body between QUANTIZE and DEQUANTIZE; the sigmoid runs in float on the logits.
            assert names[0] == "QUANTIZE" and names[-2:] == ["DEQUANTIZE", "LOGISTIC"], names
            assert set(ops[-1]["inputs"] + ops[-1]["outputs"]) == {"float32"}
            assert "output_activation" not in a
        else:
            # Ends at the int8 logits: the app (runtime, or the C header's table) applies the sigmoid.
            assert "LOGISTIC" not in names and a["output_activation"] == "sigmoid"
            assert a["outputs"][0]["name"] == "logits"
        for op in inner:
            assert set(op["inputs"] + op["outputs"]) <= INT_TYPES, (a["path"], op)
        expected = {"TRANSPOSE_CONV"} if a["graph"] == "transpose" else {"CONV_2D", "DEPTH_TO_SPACE"}
        assert expected <= set(names)
        assert "FULLY_CONNECTED" in names
    for a in int8:
        if a["io"] == "int8":
            assert a["inputs"][0]["dtype"] == "int8" and a["inputs"][0]["scale"] > 0
            assert a["outputs"][0]["dtype"] == "int8"


@pytest.mark.parametrize("name", ["vae2d", "vae3d"])
def test_subpixel_rewrite_is_exact_in_float(name):
    cfg = PRESETS[name]
    rng = np.random.default_rng(0)
    dec = build_decoder(cfg, batch_size=16)
    for layer in dec.layers:
        if layer.weights:
            layer.set_weights([rng.normal(0, 0.2, w.shape).astype(np.float32) for w in layer.get_weights()])
    sub = subpixel_decoder_from(dec, cfg, 16)
    z = rng.normal(size=(16, cfg.latent_dim)).astype(np.float32)
    assert np.abs(np.asarray(dec(z)) - np.asarray(sub(z))).max() <= 1e-5
    assert "Conv2DTranspose" not in {type(la).__name__ for la in sub.layers}


def test_manifest_checksums_match_files(exported, manifest):
    for a in manifest["artifacts"]:
        path = export_dir(exported) / a["path"]
        assert sha256_file(path) == a["sha256"] and path.stat().st_size == a["size_bytes"]


def test_c_array_round_trips(exported, manifest):
    c = next(a for a in manifest["artifacts"] if a["path"].endswith(".cc"))
    source = (export_dir(exported) / c["path"]).read_text()
    data = (export_dir(exported) / c["source"]).read_bytes()
    assert carray.parse_c_array(source) == data
    assert carray.declared_length(source) == len(data)
    assert "alignas(16) const unsigned char g_vae2d_corr_decoder_int8_model_data[]" in source
    header = (export_dir(exported) / "vae2d_corr_decoder_int8.h").read_text()
    assert "extern const unsigned int g_vae2d_corr_decoder_int8_model_data_len;" in header
    assert "extern const unsigned char g_vae2d_corr_decoder_int8_pixel_lut[256];" in header


def test_c_array_compiles_and_holds_the_model_and_table(exported, manifest, tmp_path):
    """Compile the exported .cc against its header with g++ (warnings are errors), link a program that writes
    the array and the table back, and compare them with the .tflite bytes and the parsed table."""
    import subprocess

    c = next(a for a in manifest["artifacts"] if a["path"].endswith(".cc"))
    folder = export_dir(exported)
    main_cc = tmp_path / "main.cc"
    main_cc.write_text(
        '#include <cstdio>\n#include "vae2d_corr_decoder_int8.h"\n'
        "int main() {\n"
        "  std::fwrite(g_vae2d_corr_decoder_int8_model_data, 1, g_vae2d_corr_decoder_int8_model_data_len, stdout);\n"
        "  std::fwrite(g_vae2d_corr_decoder_int8_pixel_lut, 1, 256, stdout);\n"
        "  return 0;\n}\n"
    )
    exe = tmp_path / "dump"
    build = subprocess.run(
        [
            "g++",
            "-std=c++17",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-I",
            str(folder),
            str(folder / c["path"]),
            str(main_cc),
            "-o",
            str(exe),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    out = subprocess.run([str(exe)], capture_output=True, check=True).stdout
    data = (folder / c["source"]).read_bytes()
    assert out[: len(data)] == data
    assert list(out[len(data) :]) == carray.parse_pixel_lut((folder / c["path"]).read_text())


def test_c_pixel_table_maps_int8_logits_to_the_decoders_pixels(exported, manifest):
    """An MCU app's pixels (table lookup on the int8 logits) equal the runtime's sigmoid within 1/255."""
    from runtime.backends import quantize
    from runtime.models import Decoder

    c = next(a for a in manifest["artifacts"] if a["path"].endswith(".cc"))
    table = np.array(carray.parse_pixel_lut((export_dir(exported) / c["path"]).read_text()))
    assert table.shape == (256,) and table.min() >= 0 and table.max() <= 255 and np.all(np.diff(table) >= 0)
    model = open_model(export_dir(exported) / c["source"])
    z = PRESETS["vae2d_corr"].prior.sample(8, seed=5)
    from runtime.manifest import load_manifest

    decoder = Decoder(
        load_manifest(export_dir(exported)),
        next(a for a in manifest["artifacts"] if a["path"] == c["source"]),
    )
    x = decoder.model_input(z)
    logits = np.concatenate([model.run_raw([quantize(x[i : i + 1], model.inputs[0])])[0] for i in range(8)])
    pixels = decoder.decode(z).reshape(logits.shape)
    assert np.abs(table[logits.astype(np.int32) + 128] - pixels * 255).max() <= 0.5 + 1e-3


def test_classifier_export_has_logits_and_features(exported):
    m = json.loads((exported / "classifier" / "export" / "manifest.json").read_text())
    for a in m["artifacts"]:
        assert sorted(a["output_roles"]) == ["features", "logits"]
        assert a["validation"]["max_abs_err"] <= 1e-4


def test_report_written(exported):
    text = (exported / "reports" / "export.md").read_text()
    assert "decoder_subpixel_int8_b1.tflite" in text and "of the float32 transpose decoder" in text


# ------------------------------------------------------------------------------------------ bad input
def run_export(root, model="vae2d_corr", *extra):
    return main(
        parse_args(
            [
                "--model",
                model,
                "--artifacts",
                str(root),
                "--batch",
                "4",
                "--quiet",
                "--reports",
                str(root / "reports"),
                # Error paths: prior calibration needs no MNIST (posterior calibration is the fixture's).
                "--calibration",
                "prior",
                "--calibration-samples",
                "500",
                *extra,
            ]
        )
    )


@pytest.fixture
def model_copy(exported, tmp_path):
    shutil.copytree(exported / "vae2d_corr", tmp_path / "vae2d_corr")
    return tmp_path


def restamp(model_dir):
    """What a hostile sender does too: record the replaced model files' sha256 in the run set, so that the
    run-set check passes and the loader's own checks are what is tested."""
    from train.runset import run_set_record

    for name in ("config.json", "metrics.json"):
        path = model_dir / name
        data = json.loads(path.read_text())
        record = data["run_set"]
        data["run_set"] = run_set_record(model_dir, record["run_id"], tuple(record["files"]))
        path.write_text(json.dumps(data))


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_missing_keras(model_copy, capsys):
    (model_copy / "vae2d_corr" / "decoder.keras").unlink()
    before = snapshot(model_copy / "vae2d_corr" / "export")
    assert run_export(model_copy) == 2
    assert "decoder.keras is missing from run" in capsys.readouterr().err  # the run-set check comes first
    assert snapshot(model_copy / "vae2d_corr" / "export") == before


def test_corrupt_keras(model_copy, capsys):
    path = model_copy / "vae2d_corr" / "decoder.keras"
    path.write_bytes(path.read_bytes()[:2000])
    assert run_export(model_copy) == 2  # the run set no longer matches: refused before anything is read
    assert "decoder.keras does not belong to run" in capsys.readouterr().err
    restamp(model_copy / "vae2d_corr")
    assert run_export(model_copy) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_keras_file_with_a_lambda_layer_is_refused_and_runs_nothing(model_copy, tmp_path, capsys):
    """A hostile decoder.keras: the real architecture with a Lambda layer in front that writes a marker file
    when the model runs. Export refuses it with one line, and the marker never appears."""
    from keras import layers

    marker = tmp_path / "MARKER"
    marker_name = str(marker)  # the Lambda's closure must hold plain values to be serialised
    cfg = PRESETS["vae2d_corr"]
    z_in = keras.Input((cfg.latent_dim,), name="z")
    x = layers.Lambda(
        lambda t: t if __import__("pathlib").Path(marker_name).write_text("ran") else t,
        name="evil",
        output_shape=(cfg.latent_dim,),
    )(z_in)
    for layer in build_decoder(cfg).layers[1:]:
        x = layer.__class__.from_config(layer.get_config())(x)
    path = model_copy / "vae2d_corr" / "decoder.keras"
    keras.Model(z_in, x).save(path)
    restamp(model_copy / "vae2d_corr")
    # The file is genuinely hostile: loaded the way export used to (safe_mode=False) and run, it writes.
    keras.models.load_model(path, safe_mode=False, compile=False)(np.zeros((1, cfg.latent_dim), np.float32))
    assert marker.exists()
    marker.unlink()

    before = snapshot(model_copy / "vae2d_corr" / "export")
    assert run_export(model_copy) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "layer 1 is Lambda 'evil', expected Dense 'dec_dense'" in err[0], err
    assert "refused without running anything" in err[0]
    assert not marker.exists()
    assert snapshot(model_copy / "vae2d_corr" / "export") == before


def test_decoder_of_another_latent_size_is_refused(model_copy, capsys):
    build_decoder(PRESETS["vae3d"]).save(model_copy / "vae2d_corr" / "decoder.keras")
    restamp(model_copy / "vae2d_corr")
    assert run_export(model_copy) == 2
    assert "weights do not fit the vae2d_corr described by config.json" in capsys.readouterr().err


def test_folder_from_another_model(model_copy, capsys):
    (model_copy / "vae2d_corr").rename(model_copy / "vae3d")
    assert run_export(model_copy, "vae3d") == 2
    assert "holds the model 'vae2d_corr', not 'vae3d'" in capsys.readouterr().err


def test_unwritable_output_folder(model_copy, capsys):
    shutil.rmtree(model_copy / "vae2d_corr" / "export")
    (model_copy / "vae2d_corr" / "export").write_text("a file where the export folder should be")
    assert run_export(model_copy) == 2
    assert "not writable" in capsys.readouterr().err


def test_failed_validation_keeps_previous_artifacts(model_copy, monkeypatch, capsys):
    before = snapshot(model_copy / "vae2d_corr" / "export")
    monkeypatch.setattr("export.bounds.NOISE_MODEL_MARGIN", 1e-6)  # int8 bounds a millionth of their size
    assert run_export(model_copy) == 2
    err = capsys.readouterr().err
    assert "validation failed for decoder_transpose_dynamic_int8_b1.tflite: mean abs error" in err
    assert snapshot(model_copy / "vae2d_corr" / "export") == before
    assert not [p for p in (model_copy / "vae2d_corr").iterdir() if "-staging-" in p.name]


def test_posterior_calibration_without_mnist_fails_cleanly(model_copy, tmp_path, capsys):
    before = snapshot(model_copy / "vae2d_corr" / "export")
    missing = tmp_path / "nowhere" / "mnist.npz"
    assert run_export(model_copy, "vae2d_corr", "--calibration", "posterior", "--data", str(missing)) == 2
    assert f"MNIST not found at {missing}" in capsys.readouterr().err
    assert snapshot(model_copy / "vae2d_corr" / "export") == before


def test_manifest_records_posterior_calibration(manifest):
    cal = manifest["calibration"]
    assert cal["source"] == "posterior" and cal["latent_clip"] > 0 and cal["logit_clip"] > 0


def test_project_manifests_keep_schema_version_1(exported, manifest):
    """The project's own exports stay readable by older runtimes: version 1, MNIST images implied sigmoid (the
    version-2 fields are for decoders brought by the user, tests/test_byom.py)."""
    from runtime.manifest import MNIST_MANIFEST_VERSION, load_manifest

    assert manifest["manifest_version"] == MNIST_MANIFEST_VERSION == 1
    assert manifest["image"] == {"shape": [28, 28, 1], "range": [0.0, 1.0]}
    assert set(manifest["validation"]) >= {"subpixel_float_max_abs_err", "subpixel_float_tolerance"}
    loaded = load_manifest(export_dir(exported))
    assert loaded.image_shape == (28, 28, 1) and loaded.output_activation == "sigmoid"
    assert loaded.image_range == (0.0, 1.0)
    classifier = json.loads((exported / "classifier" / "export" / "manifest.json").read_text())
    assert classifier["manifest_version"] == 1


def test_split_depth_to_space_is_exact():
    """The ONNX DepthToSpace rewrite (faster in ONNX Runtime) gives the same values as DepthToSpace."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from export.convert import split_depth_to_space

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 12, 3, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 6, 10])
    node = helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="DCR", name="d2s")
    model = helper.make_model(
        helper.make_graph([node], "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]
    )
    rewritten = split_depth_to_space(model.SerializeToString())
    assert "DepthToSpace" not in {n.op_type for n in onnx.load_from_string(rewritten).graph.node}
    data = np.random.default_rng(0).normal(size=(2, 12, 3, 5)).astype(np.float32)
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": data})[0]
    after = ort.InferenceSession(rewritten).run(None, {"x": data})[0]
    assert np.array_equal(before, after)


def test_int8_onnx_keeps_dense_and_sigmoid_float(exported, manifest):
    import onnx

    for a in manifest["artifacts"]:
        if a["format"] != "onnx" or a["precision"] != "int8":
            continue
        graph = onnx.load(export_dir(exported) / a["path"]).graph
        producers = {o: n.op_type for n in graph.node for o in n.output}
        ops = [n.op_type for n in graph.node]
        assert "DepthToSpace" not in ops and ops.count("QuantizeLinear") >= 3, a["path"]
        consumers = {i: n.op_type for n in graph.node for i in n.input}
        for n in graph.node:
            if n.op_type == "Gemm":  # float weights, float latent in
                assert producers.get(n.input[1]) != "DequantizeLinear", a["path"]
                assert producers.get(n.input[0]) != "DequantizeLinear", a["path"]
            if n.op_type == "Sigmoid":  # float sigmoid on dequantized logits, float pixels out
                assert producers[n.input[0]] == "DequantizeLinear", a["path"]
                assert consumers.get(n.output[0]) != "QuantizeLinear", a["path"]
            if n.op_type == "Conv":  # int8 weights
                assert producers[n.input[1]] == "DequantizeLinear", a["path"]


def test_model_all_exports_each_model_as_its_own_set(exported, tmp_path, capsys):
    """--model all: a corrupt vae2d_corr (and the untrained vae2d, vae3d) do not stop the classifier; every
    failure is listed at the end, one line each, and the exit code is 2."""
    for name in ("vae2d_corr", "classifier"):
        shutil.copytree(exported / name, tmp_path / name)
    decoder = tmp_path / "vae2d_corr" / "decoder.keras"
    decoder.write_bytes(decoder.read_bytes()[:2000])
    restamp(tmp_path / "vae2d_corr")
    before = snapshot(tmp_path / "vae2d_corr" / "export")
    classifier_manifest = tmp_path / "classifier" / "export" / "manifest.json"
    classifier_manifest.unlink()
    assert run_export(tmp_path, "all") == 2
    err = capsys.readouterr().err.strip().splitlines()
    at = err.index("export failed for 3 of 4 models:")
    listed = err[at + 1 :]
    assert [line.split(":")[0].strip() for line in listed] == ["vae2d", "vae3d", "vae2d_corr"], err
    assert "corrupt or truncated" in listed[2]
    assert any(line.startswith("classifier: ") and "validated" in line for line in err[:at])
    assert classifier_manifest.is_file()  # exported after the failures
    assert snapshot(tmp_path / "vae2d_corr" / "export") == before
