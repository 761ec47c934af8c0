"""firmware_sim.codegen: the generated C decoder is bit-exact with TFLite Micro and the numpy reference on the
host (sanitizers on) and on an emulated Cortex-M4 (QEMU mps2-an386), generation is deterministic, the QEMU
instruction counter is calibrated, and bad input is refused with one line. Fails (never skips) without
gcc / arm-none-eabi-gcc / newlib / qemu-system-arm / valgrind."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from export.convert import to_tflite
from firmware_sim import measure
from firmware_sim.codegen import generate, lower, run_plan
from firmware_sim.codegen import main as codegen_main
from firmware_sim.codegen import parse_args as codegen_args
from firmware_sim.graph import UnsupportedOpError, load_graph
from firmware_sim.reference import IntegerReference

# The transposed graph's TFLM Invoke() (~226 M instructions) is what this test spends its time on.
HOST_LATENTS = 150  # against TFLite Micro (make firmware checks 1000)
REFERENCE_LATENTS = 100  # of those, also against the numpy reference (~25 ms each)
M4_LATENTS = 3
GRAPHS = ("transpose", "subpixel")


@pytest.fixture(scope="session")
def built(exported, tmp_path_factory):
    """Per graph: the generated decoder, and its host (sanitized) and Cortex-M4 builds, made once."""
    measure.require_tools()
    out = {}
    for graph in GRAPHS:
        work = tmp_path_factory.mktemp(f"codegen_{graph}")
        gen = generate(source=exported / "vae2d_corr" / "export", out=work / "generated", graph=graph)
        native = measure.build_host_harness(gen, work, M4_LATENTS)
        portable = measure.build_host_harness(gen, work, M4_LATENTS, portable=True)
        out[graph] = {
            "gen": gen,
            "work": work,
            "tflite": exported / "vae2d_corr" / "export" / f"decoder_{graph}_int8_b1.tflite",
            "host_checksum": measure.parse_harness(measure._run([str(native)]))["checksum"],
            "host_portable_checksum": measure.parse_harness(measure._run([str(portable)]))["checksum"],
            "m4": measure.build_cortex_m4(gen, work, latents=M4_LATENTS),
            "m4_portable": measure.build_cortex_m4(gen, work, latents=M4_LATENTS, portable=True),
        }
    return out


@pytest.mark.parametrize("graph", GRAPHS)
def test_host_c_is_bit_exact_with_tflm_and_reference(built, graph):
    b = built[graph]
    n = b["gen"].plan.input_size  # 4: the split latent's two int8s per dimension
    zs = np.random.default_rng(7).integers(-128, 128, (HOST_LATENTS, n)).astype(np.int8)
    zs[:4] = [[-128] * n, [127] * n, [-128, 127] * (n // 2), [0] * n]  # corners of the int8 input cube
    check = measure.check_host(
        b["gen"], b["tflite"], latents=zs, out=b["work"], reference_latents=REFERENCE_LATENTS
    )
    assert check.latents_checked == HOST_LATENTS and check.reference_latents_checked == REFERENCE_LATENTS
    assert check.mismatched_vs_tflm == 0 and check.mismatched_vs_reference == 0


@pytest.mark.parametrize("graph", GRAPHS)
def test_lowered_plan_matches_reference(built, graph):
    """The phase-convolution form the C is emitted from computes the reference's bytes (numpy, no compiler)."""
    g = load_graph(built[graph]["tflite"])
    plan, ref = lower(g, name="m", graph_kind=graph), IntegerReference(g)
    for z in np.random.default_rng(3).integers(-128, 128, (20, 1, plan.input_size)).astype(np.int8):
        np.testing.assert_array_equal(run_plan(plan, z), ref.run(z))
    # Sub-pixel kernels' zero taps are not stored: both graphs keep the transposed graph's real taps.
    assert (
        plan.real_macs == lower(load_graph(built["transpose"]["tflite"]), name="m", graph_kind="t").real_macs
    )


@pytest.mark.parametrize("graph", GRAPHS)
def test_cortex_m4_checksum_equals_host(built, graph):
    b = built[graph]
    dsp, portable = measure.run_qemu(b["m4"].elf), measure.run_qemu(b["m4_portable"].elf)
    assert dsp["latents"] == portable["latents"] == M4_LATENTS
    assert dsp["checksum"] == portable["checksum"] == b["host_checksum"] == b["host_portable_checksum"]
    # The decoder object keeps its activations in .bss (no .data) and a decode uses some stack.
    assert b["m4"].data_bytes == 0 and b["m4"].bss_bytes > 0 and 0 < dsp["stack_bytes"] < 4096
    # The DSP path executes fewer instructions than the portable one, for the same bytes.
    assert dsp["ticks_total"] < portable["ticks_total"]


def test_qemu_instruction_count_calibration(built, tmp_path):
    """-icount shift=0 with the SysTick on the processor clock: a loop of 4·n instructions reads n/10 ticks."""
    first = measure.run_qemu(built["subpixel"]["m4"].elf)
    assert first["calibration_instructions"] == 400_000
    assert abs(first["calibration_ticks"] * measure.INSTRUCTIONS_PER_TICK - 400_000) <= 400
    gen = built["subpixel"]["gen"]
    obj = built["subpixel"]["m4"]
    elf = tmp_path / "cal.elf"
    measure._run(
        [
            "arm-none-eabi-gcc",
            *measure.M4_FLAGS,
            *measure._defines(gen),
            "-DVAE_EDGE_CHECK_LATENTS=1",
            "-DVAE_EDGE_CALIBRATION_LOOPS=25000",
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            str(measure.MCU_DIR / "mps2_an386.ld"),
            str(measure.MCU_DIR / "startup.c"),
            str(measure.MCU_DIR / "harness.c"),
            str(gen.source),
            "-o",
            str(elf),
        ]
    )
    second = measure.run_qemu(elf)
    assert second["calibration_instructions"] == 100_000
    assert abs(second["calibration_ticks"] * measure.INSTRUCTIONS_PER_TICK - 100_000) <= 400
    assert obj.text_bytes > 0


def test_host_callgrind_counts_one_decode(built):
    """Collection toggled on the decode function: two decodes count twice the instructions of one."""
    b = built["subpixel"]
    exe1 = measure.build_host_harness(b["gen"], b["work"], 1)
    exe2 = measure.build_host_harness(b["gen"], b["work"], 2)
    one = measure.callgrind_instructions([str(exe1)], "vae2d_corr_decode", b["work"])
    two = measure.callgrind_instructions([str(exe2)], "vae2d_corr_decode", b["work"])
    assert one > 1_000_000
    assert abs(two - 2 * one) <= 0.01 * one


def test_generation_is_deterministic(exported, tmp_path):
    folder = exported / "vae2d_corr" / "export"
    a = generate(source=folder, out=tmp_path / "a", graph="subpixel")
    b = generate(source=folder, out=tmp_path / "b", graph="subpixel")
    assert a.source.read_bytes() == b.source.read_bytes() and a.header.read_bytes() == b.header.read_bytes()
    header = a.header.read_text()
    assert "vae2d_corr_prior_cholesky[4]" in header and "VAE2D_CORR_LATENT_SCALE" in header
    assert (
        "float"
        not in a.source.read_text().split("int vae2d_corr_decode(")[1].split("void vae2d_corr_quantize")[0]
    )


def _maxpool_model(path):
    x_in = keras.Input((6, 6, 1), batch_size=1)
    model = keras.Model(x_in, keras.layers.MaxPooling2D()(keras.layers.Conv2D(4, 3)(x_in)))
    calib = np.random.default_rng(0).normal(size=(16, 6, 6, 1)).astype(np.float32)
    path.write_bytes(to_tflite(model, "int8", "int8", calib))
    return path


@pytest.mark.parametrize("case", ["float model", "unsupported op", "missing file"])
def test_bad_input_one_line_error_nothing_written(exported, tmp_path, capsys, case):
    folder = exported / "vae2d_corr" / "export"
    source, expect = {
        "float model": (folder / "decoder_transpose_float32_b1.tflite", "float32, not int8"),
        "unsupported op": (None, "does not implement MAX_POOL_2D"),
        "missing file": (tmp_path / "nope.tflite", "not found"),
    }[case]
    if source is None:
        source = _maxpool_model(tmp_path / "maxpool.tflite")
    out = tmp_path / "out"
    capsys.readouterr()
    rc = codegen_main(codegen_args([str(source), "--out", str(out)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("error: ") and expect in err[0]
    assert not out.exists()


def test_missing_tools_are_named(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(measure.VaeEdgeError) as exc:
        measure.require_tools()
    msg = str(exc.value)
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "valgrind"):
        assert tool in msg
    assert "apt-get install -y --no-install-recommends" in msg
    for package in ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "valgrind"):
        assert package in msg


def test_example_app_draws_digits_on_cortex_m4(exported, tmp_path):
    """firmware_sim/examples/main.c with README's commands: z = L eps, decode, ASCII art over semihosting."""
    measure.require_tools()
    gen = generate(source=exported / "vae2d_corr" / "export", out=tmp_path, name="digit")
    elf = tmp_path / "digit.elf"
    measure._run(
        [
            "arm-none-eabi-gcc",
            *measure.M4_FLAGS,
            "--specs=rdimon.specs",
            "-nostartfiles",
            "-T",
            str(measure.MCU_DIR / "mps2_an386.ld"),
            f"-I{tmp_path}",
            str(measure.MCU_DIR / "startup.c"),
            str(measure.MCU_DIR.parent / "examples" / "main.c"),
            str(gen.source),
            "-lm",
            "-o",
            str(elf),
        ]
    )
    lines = measure._run([*measure.QEMU_CMD, str(elf)]).splitlines()
    assert len(lines) == 3 * 29
    for k in range(3):
        assert lines[29 * k].startswith(f"digit {k + 1}, z = (")
        art = lines[29 * k + 1 : 29 * (k + 1)]
        assert all(len(row) == 28 and set(row) <= set(" .:-=+*#%@") for row in art)


def test_sample_quantizes_like_tflite_and_maps_through_the_pixel_table(built, tmp_path):
    """<model>_sample(z float): the split latent's quantization (TFLite's rounding, half away from zero, of the
    grid point and of 16 times the remainder), bit-exact with runtime.latent.LatentSplit; decode; pixel table."""
    import ctypes

    from firmware_sim.fixedpoint import tflite_round
    from firmware_sim.tflm import TflmModel, smallest_arena
    from runtime.latent import LatentSplit
    from runtime.pixels import pixel_lut

    b = built["subpixel"]
    lib_path = tmp_path / "decoder.so"
    measure._run(["gcc", *measure.HOST_FLAGS, "-fPIC", "-shared", str(b["gen"].source), "-o", str(lib_path)])
    lib = ctypes.CDLL(str(lib_path))
    plan = b["gen"].plan
    assert (plan.latent_dim, plan.input_size, plan.latent_split) == (2, 4, 16)
    split = LatentSplit(plan.latent_split, plan.latent_scale, plan.latent_zp)
    scale = np.float32(plan.latent_scale)
    ties = (np.arange(-6, 6) + 0.5).astype(np.float32) * scale  # exact halves after the division, mostly
    # grid points plus remainders whose 16-fold lands on a half step: ties of the second int8
    lo_ties = ((np.arange(-6, 6) - plan.latent_zp) * scale + (np.arange(-6, 6) + 0.5) * scale / 16).astype(
        np.float32
    )
    zs = np.concatenate(
        [np.random.default_rng(2).normal(0, 2, 400).astype(np.float32), ties, lo_ties, [40.0, -40.0]]
    )
    zs = zs.astype(np.float32).reshape(-1, 2)
    data = b["tflite"].read_bytes()
    tflm = TflmModel(data, smallest_arena(data, np.zeros((1, 4), np.int8)))
    lut = np.array(pixel_lut(plan.logits_scale, plan.logits_zp), np.uint8)
    expect_all = split.quantize(zs)
    for z, expect in zip(zs, expect_all, strict=True):
        zq = np.zeros(4, np.int8)
        lib.vae2d_corr_quantize_latent(z.ctypes.data_as(ctypes.c_void_p), zq.ctypes.data_as(ctypes.c_void_p))
        grid = [min(127, max(-128, int(tflite_round(float(v / scale))) + plan.latent_zp)) for v in z]
        assert zq.tolist() == expect.tolist() and zq[:2].tolist() == grid
        pixels = np.zeros(784, np.uint8)
        lib.vae2d_corr_sample(z.ctypes.data_as(ctypes.c_void_p), pixels.ctypes.data_as(ctypes.c_void_p))
        logits = tflm.run(zq.reshape(1, 4)).reshape(-1)
        np.testing.assert_array_equal(pixels, lut[logits.astype(np.int32) + 128])
    # The split recovers the latent to 1/32 of a grid step inside the grid's range.
    inside = np.abs(zs).max(axis=1) < 3
    err = np.abs(split.decode(expect_all) - zs)[inside]
    assert err.max() <= scale / 32 * 1.001


def test_any_output_shape_is_tflm_exact(tmp_path, tiny_rgb_decoder):
    """A 16x16x3 output: the header states the shape, the C (host, sanitizers on, SIMD and portable) equals TFLM
    and the numpy reference on every logit of 200 latents, the corners of the latent cube among them, and the
    emulated Cortex-M4 build gives the host's checksum."""
    measure.require_tools()
    calib = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    model = tiny_rgb_decoder(batch_size=1)
    (tmp_path / "rgb.tflite").write_bytes(to_tflite(model, "int8", "int8", calib))
    gen = generate(source=tmp_path / "rgb.tflite", out=tmp_path / "gen", name="rgb")
    assert gen.plan.out_shape == (16, 16, 3) and gen.plan.out_size == 768
    header = gen.header.read_text()
    for line in (
        "RGB_INPUT_SIZE 3",
        "RGB_OUTPUT_H 16",
        "RGB_OUTPUT_W 16",
        "RGB_OUTPUT_C 3",
        "RGB_OUTPUT_SIZE 768",
    ):
        assert f"#define {line}\n" in header
    rng = np.random.default_rng(1)
    corners = np.array(np.meshgrid(*[[-128, 127]] * 3)).reshape(3, -1).T
    latents = np.concatenate([corners, rng.integers(-128, 128, (192, 3))]).astype(np.int8)
    for portable in (False, True):
        (tmp_path / f"host{portable}").mkdir()
        check = measure.check_host(
            gen, tmp_path / "rgb.tflite", latents=latents, out=tmp_path / f"host{portable}", portable=portable
        )
        assert (check.latents_checked, check.reference_latents_checked, check.bit_exact) == (200, 200, True)
    assert np.array_equal(
        run_plan(gen.plan, latents[:1]),
        IntegerReference(load_graph(tmp_path / "rgb.tflite")).run(latents[:1]),
    )
    host = measure.parse_harness(measure._run([str(measure.build_host_harness(gen, tmp_path, M4_LATENTS))]))
    m4 = measure.run_qemu(measure.build_cortex_m4(gen, tmp_path, latents=M4_LATENTS).elf)
    assert m4["latents"] == M4_LATENTS and m4["checksum"] == host["checksum"]


def standalone_activations_decoder(relu6: bool = False):
    """A 3-D latent to 16x16x3 whose converted int8 graph keeps its activations as ops of their own: LEAKY_RELU
    on the FULLY_CONNECTED output, RELU (``relu6``: RELU6) after a bias-free transposed convolution, TANH between
    convolutions and LOGISTIC at the end (initial weights, random biases)."""
    layers = keras.layers
    z = keras.Input((3,), batch_size=1)
    x = layers.LeakyReLU(0.2)(layers.Dense(4 * 4 * 8)(z))
    x = layers.Reshape((4, 4, 8))(x)
    x = layers.ReLU(max_value=6.0 if relu6 else None)(
        layers.Conv2DTranspose(8, 3, strides=2, padding="same", use_bias=False)(x)
    )
    x = layers.Activation("tanh")(layers.Conv2DTranspose(8, 3, strides=2, padding="same")(x))
    x = layers.Conv2DTranspose(4, 3, padding="same")(x)
    x = layers.Activation("sigmoid")(layers.Conv2D(3, 3, padding="same")(x))
    model = keras.Model(z, x)
    rng = np.random.default_rng(2)
    for layer in model.layers:
        if len(layer.get_weights()) == 2:
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape).astype(np.float32)])
    return model


def test_standalone_activations_are_tflm_exact(tmp_path):
    """Standalone activations become tables applied to their layer's rows: the C (host with sanitizers, SIMD
    and portable; the emulated Cortex-M4 and M55, Helium) equals TFLite Micro and the numpy reference."""
    from firmware_sim.targets import all_targets
    from firmware_sim.toolchain import build_target

    measure.require_tools()
    calib = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    tflite = tmp_path / "act.tflite"
    tflite.write_bytes(to_tflite(standalone_activations_decoder(), "int8", "int8", calib))
    kinds = [op.kind for op in load_graph(tflite).ops]
    assert {"LEAKY_RELU", "RELU", "TANH", "LOGISTIC"} <= set(kinds), kinds
    gen = generate(source=tflite, out=tmp_path / "gen", name="act")
    assert gen.plan.dense.lut is not None and gen.plan.output_op == "LOGISTIC"
    assert sum(c.lut is not None for c in gen.plan.convs) == 3
    rng = np.random.default_rng(1)
    corners = np.array(np.meshgrid(*[[-128, 127]] * 3)).reshape(3, -1).T
    latents = np.concatenate([corners, rng.integers(-128, 128, (192, 3))]).astype(np.int8)
    reference = IntegerReference(load_graph(tflite))
    assert all(np.array_equal(run_plan(gen.plan, z[None]), reference.run(z[None])) for z in latents[:20])
    for portable in (False, True):
        (tmp_path / f"host{portable}").mkdir()
        check = measure.check_host(
            gen, tflite, latents=latents, out=tmp_path / f"host{portable}", portable=portable
        )
        assert (check.latents_checked, check.bit_exact) == (200, True), portable
    host = measure.parse_harness(measure._run([str(measure.build_host_harness(gen, tmp_path, M4_LATENTS))]))
    for name in ("cortex-m4", "cortex-m55"):
        target = all_targets()[name]
        (tmp_path / name).mkdir()
        build = build_target(
            target, gen, tmp_path / name, latents=M4_LATENTS, kernel=target.emulated.kernels[0]
        )
        result = measure.run_target(target, build.elf)
        assert result["latents"] == M4_LATENTS and result["checksum"] == host["checksum"], name
    # The pixel table maps the LOGISTIC's [0, 1] output, not a sigmoid of it.
    assert "round(255 * value) (a LOGISTIC output)" in gen.header.read_text()
    # A standalone RELU6 the converter quantizes unlike its input: TFLM's int8 kernel ignores the output's
    # quantization (its values are not the graph's), so the generator refuses it with one line.
    relu6 = tmp_path / "relu6.tflite"
    relu6.write_bytes(to_tflite(standalone_activations_decoder(relu6=True), "int8", "int8", calib))
    with pytest.raises(UnsupportedOpError, match="RELU6 has an output quantized unlike its input"):
        generate(source=relu6, out=tmp_path / "relu6", name="relu6")
    assert not (tmp_path / "relu6").exists()
