"""python -m export --decoder: decoders built here (untrained, random weights) exported with the CLI into tmp_path.

Three exports cover the layers of docs/byom.md between them (each export converts 14-18 artifacts, the slow
part, so each is made once per module and checked by several tests): latent 1, sequential, UpSampling2D + Conv2D,
sigmoid, with its encoder and posterior calibration; latent 8, BatchNormalization + LeakyReLU, a residual Add,
tanh; latent 2 under a correlated prior, 32x32x3, a depthwise convolution, Concatenate, a linear output.
Refusals (a Lambda, a custom activation, an unfoldable BatchNormalization, an op TFLite Micro lacks) need no
conversion and write nothing.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from keras import layers

from export.__main__ import main, parse_args
from runtime import Decoder, load_manifest
from runtime.backends import TFLiteModel
from runtime.errors import VaeEdgeError
from runtime.vocab import ArtifactSpec

BATCH = 2
KINDS_PER_BATCH = 7  # TFLite float32, float16, dynamic int8, int8, int8 (float I/O); ONNX float32, int8


def export_cli(decoder_path, root, name, *extra) -> int:
    return main(
        parse_args(
            [
                "--decoder",
                str(decoder_path),
                "--name",
                name,
                "--artifacts",
                str(root),
                "--batch",
                str(BATCH),
                "--calibration-samples",
                "500",
                "--validation-samples",
                "100",
                "--quiet",
                *extra,
            ]
        )
    )


def randomize_batch_norms(model, seed=0):
    """Moving statistics away from (0, 1), so that folding them changes the weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.2, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )
    return model


def upsampling_decoder():
    """Latent 1, sequential: Dense -> Reshape -> UpSampling2D + Conv2D (twice) -> sigmoid, 28x28x1."""
    return keras.Sequential(
        [
            keras.Input((1,)),
            layers.Dense(7 * 7 * 8, activation="relu"),
            layers.Reshape((7, 7, 8)),
            layers.UpSampling2D(),
            layers.Conv2D(8, 3, padding="same", activation="relu"),
            layers.UpSampling2D(),
            layers.Conv2D(1, 3, padding="same", activation="sigmoid"),
        ]
    )


def mnist_encoder(latent: int):
    x_in = keras.Input((28, 28, 1))
    x = layers.Conv2D(4, 3, strides=4, padding="same", activation="relu")(x_in)
    x = layers.Flatten()(x)
    return keras.Model(x_in, [layers.Dense(latent)(x), layers.Dense(latent)(x)])


def batchnorm_residual_tanh_decoder():
    """Latent 8: Dense + BatchNormalization + LeakyReLU, Conv2DTranspose, a residual Add, a tanh output."""
    z = keras.Input((8,))
    x = layers.Dense(7 * 7 * 8, use_bias=False)(z)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.1)(x)
    x = layers.Reshape((7, 7, 8))(x)
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.LeakyReLU(0.2)(x)
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = layers.Add()([x, y])
    x = layers.Conv2DTranspose(1, 3, strides=2, padding="same")(x)
    x = layers.Activation("tanh")(x)
    return randomize_batch_norms(keras.Model(z, x))


def depthwise_rgb_decoder():
    """Latent 2: 32x32x3 with a depthwise convolution, Concatenate, relu6 and a linear output."""
    z = keras.Input((2,))
    x = layers.Dense(8 * 8 * 8, activation="relu")(z)
    x = layers.Reshape((8, 8, 8))(x)
    x = layers.UpSampling2D((2, 2))(x)
    d = layers.DepthwiseConv2D(3, padding="same", activation="relu6")(x)
    x = layers.Concatenate()([x, d])
    x = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(x)
    x = layers.Conv2D(3, 3, padding="same")(x)
    return keras.Model(z, x)


def load(root, name):
    return json.loads((root / name / "export" / "manifest.json").read_text())


@pytest.fixture(scope="module")
def exports(tmp_path_factory, mnist_path):
    """root/ with three decoders exported through the CLI: {name: manifest}."""
    src = tmp_path_factory.mktemp("byom_src")
    root = tmp_path_factory.mktemp("byom_artifacts")
    upsampling_decoder().save(src / "ups.keras")
    mnist_encoder(1).save(src / "ups_encoder.keras")
    batchnorm_residual_tanh_decoder().save(src / "bn.keras")
    depthwise_rgb_decoder().save(src / "rgb.keras")
    runs = {
        "ups": ("--encoder", str(src / "ups_encoder.keras"), "--data", str(mnist_path)),
        "bn": (),
        "rgb": ("--prior-cov", "1,0.4;0.4,0.5"),
    }
    for name, extra in runs.items():
        assert export_cli(src / f"{name}.keras", root, name, *extra) == 0, name
    return root, {name: load(root, name) for name in runs}


EXPECTED = {
    # name: (latent, image shape, activation, encoder exported, calibration)
    "ups": (1, [28, 28, 1], "sigmoid", True, "posterior"),
    "bn": (8, [28, 28, 1], "tanh", False, "prior"),
    "rgb": (2, [32, 32, 3], "none", False, "prior"),
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_manifest_records_the_decoder(exports, name):
    root, manifests = exports
    m = manifests[name]
    latent, shape, activation, encoder, calibration = EXPECTED[name]
    assert m["manifest_version"] == 2 and m["model"] == name and m["kind"] == "vae"
    assert m["latent_dim"] == latent and m["image"]["shape"] == shape
    assert m["image"]["activation"] == activation
    assert m["image"]["range"] == {"sigmoid": [0.0, 1.0], "tanh": [-1.0, 1.0], "none": None}[activation]
    assert m["calibration"]["source"] == calibration and m["calibration"]["samples"] == 500
    assert (
        m["validation"]["rebuilt_float_max_abs_err"] <= m["validation"]["rebuilt_float_tolerance"]["max_abs"]
    )
    assert sorted(m["source"]) == (["decoder", "encoder"] if encoder else ["decoder"])
    files = {a["path"] for a in m["artifacts"]}
    decoders = [a for a in m["artifacts"] if a["role"] == "decoder" and a["format"] != "c"]
    assert len(decoders) == 2 * KINDS_PER_BATCH and {a["graph"] for a in decoders} == {"transpose"}
    assert {f"{name}_decoder_int8.h", f"{name}_decoder_int8.cc"} <= files
    assert ({"encoder_float32_b1.tflite", f"encoder_float32_b{BATCH}.tflite"} <= files) == encoder
    for a in m["artifacts"]:
        if a["format"] == "c":
            continue
        assert a["validation"]["passed"], a["path"]
        assert a["inputs"][0]["shape"][0] == a["batch"], a["path"]  # a static batch, as exported today
        if a["role"] == "decoder":
            assert a["inputs"][0]["shape"] == [a["batch"], latent], a["path"]
            assert a["outputs"][0]["shape"] == [a["batch"], *shape], a["path"]
    # The runtime reads it: the schema's new fields, and the old defaults for older manifests.
    loaded = load_manifest(root / name / "export")
    assert loaded.image_shape == tuple(shape) and loaded.output_activation == activation
    assert loaded.prior.latent_dim == latent


@pytest.mark.parametrize("name", list(EXPECTED))
def test_int8_graphs_run_on_tflite_micro_ops(exports, name):
    """No TILE (UpSampling2D is rebuilt as RESIZE_NEAREST_NEIGHBOR), BatchNormalization folded (no MUL), every
    int8 op integer-only, and the full-int8 decoder runs in TFLite Micro, giving the TFLite interpreter's output."""
    from firmware_sim.tflm import TflmModel

    root, manifests = exports
    folder = root / name / "export"
    for a in manifests[name]["artifacts"]:
        if a["format"] != "tflite" or a["role"] != "decoder":
            continue
        ops = a["ops"]
        assert ops == [op["op"] for op in TFLiteModel(folder / a["path"], delegates=False).op_details()]
        assert "TILE" not in ops and "MUL" not in ops, (a["path"], ops)
        if name in ("ups", "rgb"):
            assert "RESIZE_NEAREST_NEIGHBOR" in ops, a["path"]
        if name == "bn":
            assert ops.count("ADD") == 1 and "LEAKY_RELU" in ops, ops  # the residual Add; BN folded
        if a["precision"] == "int8" and a["io"] == "int8":
            assert a.get("output_activation") == ("sigmoid" if name == "ups" else None)
            data = (folder / a["path"]).read_bytes()
            q = np.random.default_rng(0).integers(-128, 128, a["inputs"][0]["shape"], dtype=np.int8)
            micro = TflmModel(data, 4 << 20).run(q).astype(int)
            lite = TFLiteModel(folder / a["path"], delegates=False).run_raw([q])[0].astype(int)
            # LiteRT's optimized kernels round a few ties differently from TFLM's reference ones (README:
            # 0-1.3% of the project's logits): one int8 level, rarely; a wrong graph is off by far more.
            diff = np.abs(micro - lite)
            assert micro.shape == lite.shape and diff.max() <= 1 and (diff > 0).mean() < 0.02, a["path"]


def test_c_array_matches_the_int8_decoder(exports):
    from export import carray

    root, manifests = exports
    for name, m in manifests.items():
        folder = root / name / "export"
        source = (folder / f"{name}_decoder_int8.cc").read_text()
        tflite = next(a for a in m["artifacts"] if a["path"] == "decoder_transpose_int8_b1.tflite")
        assert carray.parse_c_array(source) == (folder / tflite["path"]).read_bytes()
        has_lut = "pixel_lut[256]" in source
        assert has_lut == (name == "ups"), name  # the grey table maps sigmoid logits only


def test_runtime_decodes_a_28x28_export(exports):
    """The runtime decodes the latent-1 decoder's export like a project model (graph "transpose": the one
    exported); its pixels agree with the float decoder's within the int8 tolerance."""
    root, _ = exports
    m = load_manifest(root / "ups" / "export")
    z = m.prior.sample(16, seed=3)
    ref = Decoder.from_manifest(m, precision="float32").decode(z)
    int8 = Decoder.from_manifest(m, precision="int8", graph="transpose").decode(z)
    assert ref.shape == int8.shape == (16, 28, 28)
    entry = m.select(role="decoder", format="tflite", precision="int8", io="int8", graph="transpose", batch=1)
    assert np.abs(int8 - ref).mean() <= 4 * entry["validation"]["tolerance"]["mean_abs"]


def test_rebuilt_graph_is_the_decoder(tmp_path):
    """BatchNormalization folded and UpSampling2D rebuilt: the same function, to float32 rounding."""
    from export.byom import deployment_model

    decoder = batchnorm_residual_tanh_decoder()
    rebuilt = deployment_model(decoder, 4)
    kinds = [type(layer).__name__ for layer in rebuilt.layers]
    assert "BatchNormalization" not in kinds
    z = np.random.default_rng(0).standard_normal((4, 8)).astype(np.float32)
    assert np.abs(np.asarray(rebuilt(z)) - np.asarray(decoder(z))).max() < 1e-5
    ups = upsampling_decoder()
    rebuilt = deployment_model(ups, 4)
    assert "UpSampling2D" not in [type(layer).__name__ for layer in rebuilt.layers]
    z = z[:, :1]
    assert np.array_equal(np.asarray(rebuilt(z)), np.asarray(ups(z)))  # nearest upsampling is exact


def lambda_decoder(marker):
    marker_name = str(marker)
    z = keras.Input((2,))
    x = layers.Lambda(
        lambda t: t if __import__("pathlib").Path(marker_name).write_text("ran") else t,
        name="evil",
        output_shape=(2,),
    )(z)
    x = layers.Dense(28 * 28, activation="sigmoid")(x)
    return keras.Model(z, layers.Reshape((28, 28, 1))(x))


def test_lambda_layer_is_refused_and_nothing_runs_or_is_written(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.keras"
    lambda_decoder(marker).save(path)
    root = tmp_path / "artifacts"
    assert export_cli(path, root, "evil") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "layer 'evil' is a Lambda" in err[0] and "allowed layers: InputLayer, Dense," in err[0], err
    assert not marker.exists()
    assert not root.exists()  # nothing written, not even the artifacts folder


@pytest.mark.parametrize(
    "build, fragment",
    [
        (
            lambda: keras.Sequential(
                [keras.Input((2,)), layers.Dense(784, activation="gelu"), layers.Reshape((28, 28, 1))]
            ),
            "has the activation 'gelu'",
        ),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((2,)),
                    layers.Dense(784),
                    layers.Reshape((28, 28, 1)),
                    layers.UpSampling2D(interpolation="bilinear"),
                ]
            ),
            "interpolates 'bilinear'",
        ),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((2,)),
                    layers.Dense(784, activation="relu", name="d"),
                    layers.BatchNormalization(name="bn"),
                    layers.Reshape((28, 28, 1)),
                ]
            ),
            "BatchNormalization 'bn' follows Dense 'd' (activation relu)",
        ),
        (
            lambda: keras.Sequential(
                [
                    keras.Input((2,)),
                    layers.Dense(784, activation="sigmoid"),
                    layers.Dense(784),
                    layers.Reshape((28, 28, 1)),
                ]
            ),
            "sigmoid only as the output activation",
        ),
    ],
    ids=["activation", "bilinear", "unfoldable-batchnorm", "hidden-sigmoid"],
)
def test_decoders_export_cannot_handle_are_refused(tmp_path, capsys, build, fragment):
    path = tmp_path / "decoder.keras"
    build().save(path)
    assert export_cli(path, tmp_path / "artifacts", "mine") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
    assert not (tmp_path / "artifacts" / "mine").exists()


def test_flags_are_checked_before_anything_loads(tmp_path, capsys):
    path = tmp_path / "decoder.keras"
    upsampling_decoder().save(path)
    assert export_cli(path, tmp_path, "mine", "--prior-cov", "1,0.4;0.4,0.5") == 2  # latent 1: Σ must be 1x1
    assert "prior covariance has shape (2, 2) but the latent size is 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--decoder", str(path), "--name", "vae2d"])  # a project model's folder
    with pytest.raises(SystemExit):
        parse_args(["--decoder", str(path), "--name", "mine", "--model", "vae2d"])
    with pytest.raises(SystemExit):
        parse_args(["--decoder", str(path), "--name", "mine", "--calibration", "posterior"])  # no encoder
    assert not (tmp_path / "mine").exists()


def test_an_op_tflite_micro_lacks_is_refused(tmp_path):
    """Keras 3's UpSampling2D converted as it is gives TILE, which TFLite Micro lacks: the check names it."""
    from export import convert
    from export.byom import check_tflm

    ups = upsampling_decoder()
    static = keras.Sequential([keras.Input((1,), batch_size=1), *ups.layers])
    calibration = np.random.default_rng(0).standard_normal((64, 1)).astype(np.float32)
    spec = ArtifactSpec("decoder", "tflite", "int8", "int8", "transpose", 1)
    path = tmp_path / spec.filename
    path.write_bytes(convert.to_tflite(static, "int8", "int8", calibration))
    assert "TILE" in TFLiteModel(path, delegates=False).op_names()
    with pytest.raises(VaeEdgeError, match="TFLite Micro cannot run decoder_transpose_int8_b1.tflite .*TILE"):
        check_tflm(spec, path)


@pytest.mark.parametrize(
    "version, image, fragment",
    [
        (2, {"shape": [32, 32, 3], "range": None, "activation": "none"}, None),
        (2, {"shape": [28, 28, 1], "range": [-1.0, 1.0], "activation": "tanh"}, None),
        (1, {"shape": [28, 28, 1], "range": [0.0, 1.0]}, None),
        (1, {"shape": [28, 28, 1], "range": [0.0, 1.0], "activation": "tanh"}, "image.activation"),
        (2, {"shape": [28, 28, 1], "range": [0.0, 1.0], "activation": "softmax"}, "image.activation"),
        (2, {"shape": [28, 28], "range": [0.0, 1.0], "activation": "sigmoid"}, "image.shape"),
        (2, {"shape": [28, 28, 1], "range": [1.0, 0.0], "activation": "sigmoid"}, "image.range"),
        (3, {"shape": [28, 28, 1], "range": [0.0, 1.0]}, "this runtime reads versions 1..2"),
    ],
)
def test_manifest_schema_of_the_image(tmp_path, version, image, fragment):
    """Version 2 adds image.activation and any image shape; a version 1 manifest (every export before) loads
    with MNIST's defaults; anything else is one ManifestError naming the field."""
    from runtime.manifest import ManifestError, validate_manifest
    from runtime.prior import Prior

    data = {
        "manifest_version": version,
        "model": "mine",
        "kind": "vae",
        "latent_dim": 2,
        "prior": Prior.isotropic(2).to_json(),
        "image": image,
        "artifacts": [],
    }
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    if fragment is None:
        validate_manifest(data, tmp_path / "manifest.json")
        m = load_manifest(tmp_path)
        assert m.image_shape == tuple(image["shape"])
        assert m.output_activation == image.get("activation", "sigmoid")
        assert m.image_range == (tuple(image["range"]) if image["range"] else None)
    else:
        with pytest.raises(ManifestError, match=fragment):
            load_manifest(tmp_path)


@pytest.mark.parametrize("build", [batchnorm_residual_tanh_decoder, depthwise_rgb_decoder], ids=["bn", "rgb"])
def test_a_wrong_conversion_fails_the_bounds(tmp_path, build):
    """The bounds of a rebuilt decoder (folded BatchNormalization, Add, Concatenate, depthwise, tanh and linear
    outputs) pass its correct float32 and int8 artifacts and fail one whose weights carry 3% of noise."""
    from export import convert
    from export.bounds import DecoderBounds
    from export.byom import deployment_model
    from export.pipeline import convert_decoder, validate_decoder

    decoder = build()
    latent = decoder.inputs[0].shape[1]
    rng = np.random.default_rng(0)
    z = rng.standard_normal((64, latent)).astype(np.float32)
    calibration = np.clip(rng.standard_normal((256, latent)), -3, 3).astype(np.float32)
    rebuilt = deployment_model(decoder, BATCH)
    bounds = DecoderBounds(
        decoder,
        None,
        z,
        calibration,
        convert.LOGIT_CLIP,
        graphs={"transpose": rebuilt},
        inexact={"transpose"},
    )
    reference = np.asarray(decoder(z))
    activation = bounds.activation
    for precision, io in (("float32", "float"), ("int8", "int8")):
        spec = ArtifactSpec("decoder", "tflite", precision, io, "transpose", BATCH)
        path = tmp_path / spec.filename
        path.write_bytes(convert_decoder(spec, rebuilt, calibration, {}, activation))
        entry = validate_decoder(
            path, spec, z, reference, bounds.tolerance(spec), activation=activation, fused_relu=False
        )
        assert entry["validation"]["passed"]
    wrong = deployment_model(decoder, BATCH)
    for layer in wrong.layers:
        if layer.weights:
            kernel, *rest = layer.get_weights()
            layer.set_weights(
                [kernel * (1 + 0.03 * rng.standard_normal(kernel.shape)).astype(np.float32), *rest]
            )
    spec = ArtifactSpec("decoder", "tflite", "float32", "float", "transpose", BATCH)
    path = tmp_path / "wrong.tflite"
    path.write_bytes(convert_decoder(spec, wrong, calibration, {}, activation))
    with pytest.raises(VaeEdgeError, match="validation failed for decoder_transpose_float32_b2.tflite"):
        validate_decoder(
            path, spec, z, reference, bounds.tolerance(spec), activation=activation, fused_relu=False
        )


def test_failed_validation_writes_nothing(tmp_path, monkeypatch, capsys):
    """An artifact outside its bound refuses the whole set: exit 2, one line, no folder left behind."""
    path = tmp_path / "decoder.keras"
    upsampling_decoder().save(path)
    monkeypatch.setattr("export.bounds.NOISE_MODEL_MARGIN", 1e-6)  # int8 bounds a millionth of their size
    root = tmp_path / "artifacts"
    assert export_cli(path, root, "mine") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "validation failed for decoder_transpose_dynamic_int8_b1.tflite" in err[0], err
    assert not root.exists()


def test_own_decoder_through_export_and_firmware(tmp_path, capsys, tiny_rgb_decoder):
    """A user's 16x16x3 sigmoid decoder of transposed convolutions: exported with --decoder, then
    python -m firmware_sim.measure --model NAME generates its C, which is TFLM-exact on the host and gives the
    host's checksum on the emulated Cortex-M4, in less RAM than TFLM's arena. --model all over a folder that
    also holds a decoder the generator cannot take (UpSampling2D) measures this one and names the other."""
    from firmware_sim.measure import main as measure_main
    from firmware_sim.measure import parse_args as measure_args

    tiny_rgb_decoder(activation="sigmoid").save(tmp_path / "tiny_rgb.keras")
    upsampling_decoder().save(tmp_path / "ups.keras")
    root = tmp_path / "artifacts"
    assert export_cli(tmp_path / "tiny_rgb.keras", root, "tiny_rgb") == 0
    assert export_cli(tmp_path / "ups.keras", root, "ups") == 0
    flags = ["--artifacts", str(root), "--target", "cortex-m4", "--latents", "50", "--mcu-latents", "2"]
    reports = tmp_path / "reports"
    assert measure_main(measure_args([*flags, "--no-callgrind", "--reports", str(reports)])) == 0
    report = json.loads((reports / "firmware_c.json").read_text())
    (rec,) = report["records"]
    assert rec["model"] == "tiny_rgb" and rec["graph"] == "transpose" and rec["bit_exact_host"]
    m4 = rec["targets"]["cortex-m4"]
    assert m4["bit_exact"] and 0 < m4["ram_bytes"] < rec["tflm_arena_bytes"]
    assert [s["model"] for s in report["skipped"]] == ["ups"]
    assert "RESIZE_NEAREST_NEIGHBOR" in report["skipped"][0]["reason"]
    capsys.readouterr()
    assert measure_main(measure_args([*flags, "--model", "ups", "--reports", str(reports)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "RESIZE_NEAREST_NEIGHBOR" in err[0]

    # python -m firmware_sim (TFLM vs the integer reference, memory plans) on the same folder: the user's one
    # graph is the deployment graph; the model the reference cannot run is named and left out.
    from firmware_sim.__main__ import main as simulate_main
    from firmware_sim.__main__ import parse_args as simulate_args

    sim = ["--artifacts", str(root), "--target", "cortex-m4", "--latents", "30", "--reports", str(reports)]
    assert simulate_main(simulate_args(sim)) == 0
    report = json.loads((reports / "firmware.json").read_text())
    (rec,) = report["records"]
    assert rec["model"] == "tiny_rgb" and rec["deployment_graph"] == "transpose" and rec["bit_exact_vs_tflm"]
    assert list(rec["graphs"]) == ["transpose"] and rec["latents_checked"] == 30
    assert [s["model"] for s in report["skipped"]] == ["ups"]
    assert "tiny_rgb" in (reports / "firmware.md").read_text()
