"""Each artifact of an export, from a Keras model to its manifest entry: the steps export/pipeline.py takes for
every file it writes.

:func:`convert_decoder` converts a decoder artifact (TFLite or ONNX; the full-int8 TFLite graph cut at its
logits when the output is a sigmoid). :func:`validate_decoder` and :func:`validate_encoder` load an artifact back
in its own runtime, run it on the validation inputs and check its error against Keras (:func:`check_tolerance`;
a full-int8 graph must also be integer-only, :func:`check_int8_graph`), and describe it as a manifest entry
(:func:`artifact_entry`). :func:`c_array_files` writes the full-int8 batch-1 decoder as C source files
(export/carray.py) and their entries.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.backends import TFLiteModel, open_model, run_batched
from runtime.errors import VaeEdgeError
from runtime.fileio import sha256_file, write_text_atomic
from runtime.models import decoder_pixels
from runtime.vocab import IO, ArtifactSpec, Format, Graph, Precision, Role, Tolerance

from . import carray, convert
from .bounds import SIGMOID, TANH

INT_TYPES = {"int8", "int32", "uint8", "int16"}


def error_figures(out: np.ndarray, ref: np.ndarray) -> dict:
    err = np.abs(out.astype(np.float64) - ref.astype(np.float64))
    return {"max_abs_err": float(err.max()), "mean_abs_err": float(err.mean())}


def check_tolerance(spec: ArtifactSpec, figures: dict, tolerance: Tolerance | None = None) -> None:
    """``tolerance``: a decoder's, derived from its weights (export/bounds.py); others use ``spec.tolerance``."""
    broken = (tolerance or spec.tolerance).failures(
        max_abs_err=figures["max_abs_err"], mean_abs_err=figures.get("mean_abs_err", 0.0)
    )
    if broken:
        raise VaeEdgeError(
            f"validation failed for {spec.filename}: {broken[0]} against the Keras model; "
            "previous artifacts left untouched"
        )


def check_int8_graph(
    variant: ArtifactSpec, ops: list[dict], *, activation: str = SIGMOID, fused_relu: bool = True
) -> None:
    """Full-integer graphs: every op int8 between the ends; with ``fused_relu``, ReLUs fused into their producers
    (the project's decoders: a separate RELU makes them ~7x slower; a decoder brought by the user may need one,
    after a Concatenate for instance)."""
    names = [op["op"] for op in ops]
    if fused_relu and "RELU" in names:
        raise VaeEdgeError(
            f"{variant.filename} has a separate RELU op (not fused): the int8 decoder would be ~7x slower"
        )
    inner = ops
    if variant.io is IO.FLOAT:  # float ends: QUANTIZE in; DEQUANTIZE (then the float sigmoid) out
        expected = ["DEQUANTIZE", "LOGISTIC"] if activation == SIGMOID else ["DEQUANTIZE"]
        tail = [op["op"] for op in ops[-len(expected) :]]
        if tail != expected:
            raise VaeEdgeError(f"{variant.filename} must end with {' -> '.join(expected)}, ends with {tail}")
        inner = [op for op in ops[: -len(expected)] if op["op"] != "QUANTIZE"]
    for op in inner:
        floats = [t for t in op["inputs"] + op["outputs"] if t not in INT_TYPES]
        if floats:
            raise VaeEdgeError(
                f"{variant.filename}: op {op['op']} computes in {floats[0]}; the int8 graph must be integer-only"
            )


def artifact_entry(
    path: Path,
    variant: ArtifactSpec,
    model,
    figures: dict,
    ops: list[str],
    extra: dict,
    tolerance: Tolerance | None = None,
) -> dict:
    return {
        "path": path.name,
        **variant.to_json(),
        "sha256": sha256_file(path),
        "size_bytes": path.stat().st_size,
        "inputs": [t.to_json() for t in model.inputs],
        "outputs": [t.to_json() for t in model.outputs],
        "ops": ops,
        "validation": {
            **figures,
            "tolerance": (tolerance or variant.tolerance).to_json(),
            "passed": True,
        },
        **extra,
    }


def output_activation_of(spec: ArtifactSpec, activation: str) -> str | None:
    """What the app applies to the artifact's output: a full-int8 decoder of a sigmoid output ends at its int8
    logits (``sigmoid``); a tanh or linear output stays in the graph (int8 TANH has a fine, fixed output scale,
    1/128), so the output already is the image (None)."""
    return spec.output_activation if activation == SIGMOID else None


def convert_decoder(
    spec: ArtifactSpec, model, calibration: np.ndarray, onnx_float: dict, activation: str = SIGMOID
) -> bytes:
    """The artifact's bytes. ``onnx_float`` keeps each float ONNX graph for its int8 (QDQ) sibling.
    ``activation``: the decoder's output activation; only a sigmoid is cut off the full-int8 graphs."""
    if spec.format is Format.TFLITE:
        data = convert.to_tflite(model, spec.precision, spec.io, calibration)
        if spec.precision is Precision.INT8 and activation == SIGMOID:
            return convert.int8_decoder_head(data, spec.io)
        return data
    key = (spec.graph, spec.batch)
    if key not in onnx_float:
        onnx_float[key] = convert.to_onnx(model)
    if spec.precision is Precision.FLOAT32:
        return onnx_float[key]
    fl = onnx_float[key]
    return convert.quantize_onnx(fl, calibration, convert.onnx_input_name(fl), spec.batch)


def validate_decoder(
    path: Path,
    v: ArtifactSpec,
    z: np.ndarray,
    reference: np.ndarray,
    tolerance: Tolerance,
    *,
    activation: str = SIGMOID,
    fused_relu: bool = True,
) -> dict:
    """Run the artifact on the validation latents; its error against Keras must be within ``tolerance``
    (derived from the decoder's weights and the artifact's arithmetic: export/bounds.py)."""
    model = open_model(path)
    out_activation = output_activation_of(v, activation)
    out = decoder_pixels(run_batched(model, z, v.batch)[0], out_activation)
    figures = error_figures(out, reference)
    figures["samples"] = len(z)
    check_tolerance(v, figures, tolerance)
    ops = []
    if v.format is Format.TFLITE:
        details = TFLiteModel(path, delegates=False).op_details()
        if v.precision is Precision.INT8:
            check_int8_graph(v, details, activation=activation, fused_relu=fused_relu)
        ops = [op["op"] for op in details]
    else:
        ops = model.op_names()
    extra = {"output_activation": out_activation} if out_activation else {}
    return artifact_entry(path, v, model, figures, ops, extra, tolerance)


def validate_encoder(path: Path, v: ArtifactSpec, images, ref_mu, ref_logvar) -> dict:
    model = open_model(path)
    outs = run_batched(model, images, v.batch)
    # TFLite may reorder a model's outputs: name each by the Keras output it reproduces.
    roles = []
    for o in outs:
        errs = {"z_mean": np.abs(o - ref_mu).max(), "z_log_var": np.abs(o - ref_logvar).max()}
        roles.append(min(errs, key=errs.get))
    if sorted(roles) != ["z_log_var", "z_mean"]:
        raise VaeEdgeError(
            f"validation failed for {v.filename}: its outputs match neither z_mean nor z_log_var"
        )
    figures = {
        "max_abs_err": float(
            max(
                np.abs(o - (ref_mu if r == "z_mean" else ref_logvar)).max()
                for o, r in zip(outs, roles, strict=True)
            )
        ),
        "samples": len(images),
    }
    check_tolerance(v, figures)
    ops = TFLiteModel(path, delegates=False).op_names()
    return artifact_entry(path, v, model, figures, ops, {"output_roles": roles})


def array_only_sources(
    data: bytes, model_name: str, source_file: str, sha256: str, note: str
) -> tuple[str, str]:
    """(header, source) of the int8 decoder as a C array under :func:`carray.symbol_for`, without the pixel table
    (which maps int8 *logits* through a sigmoid): for decoders whose output is not sigmoid logits. ``note``
    says what the output is."""
    sym = carray.symbol_for(model_name)
    guard = f"VAE_EDGE_{model_name.upper()}_DECODER_INT8_H_"
    stamp = f"// Generated by vae-edge export from {source_file} (sha256 {sha256}). Do not edit.\n"
    header = (
        f"{stamp}#ifndef {guard}\n#define {guard}\n\n#include <cstddef>\n\n"
        f"// Full-integer (int8 in, int8 out) batch-1 decoder of {model_name}, a TFLite flatbuffer.\n"
        f"extern const unsigned char {sym}[];\nextern const unsigned int {sym}_len;\n\n"
        f"// {note}\n\n#endif  // {guard}\n"
    )
    lines = [
        ", ".join(f"0x{b:02x}" for b in data[i : i + carray.BYTES_PER_LINE])
        for i in range(0, len(data), carray.BYTES_PER_LINE)
    ]
    source = (
        f'{stamp}#include "{model_name}_decoder_int8.h"\n\n'
        "// 16-byte alignment lets TFLite Micro read the flatbuffer in place.\n"
        f"alignas(16) const unsigned char {sym}[] = {{\n  " + ",\n  ".join(lines) + "\n};\n"
        f"const unsigned int {sym}_len = {len(data)};\n"
    )
    return header, source


def c_array_files(
    staging: Path, model_name: str, entries: list[dict], graph: Graph, activation: str = SIGMOID
) -> list[dict]:
    """The full-int8 batch-1 decoder of ``graph`` as ``<model>_decoder_int8.h/.cc`` in ``staging``; with a
    sigmoid output, also the table that maps its int8 logits to 8-bit grey (export/carray.py)."""
    source_spec = ArtifactSpec(Role.DECODER, Format.TFLITE, Precision.INT8, IO.INT8, graph, 1)
    src = next(e for e in entries if e["path"] == source_spec.filename)
    data = (staging / src["path"]).read_bytes()
    out_q = src["outputs"][0]
    quant = (float(out_q["scale"]), int(out_q["zero_point"]))
    if activation == SIGMOID:
        header, source = carray.c_sources(data, model_name, src["path"], src["sha256"], quant)
    else:
        shape = "x".join(str(d) for d in out_q["shape"][1:])
        what = "tanh values in [-1, 1]" if activation == TANH else "the decoder's (linear) output values"
        note = (
            f"Its output is {shape} int8 {what}: value = {quant[0]!r} * (q - {quant[1]}); no sigmoid table "
            f"(the output activation is {activation})."
        )
        header, source = array_only_sources(data, model_name, src["path"], src["sha256"], note)
    if carray.parse_c_array(source) != data:
        raise VaeEdgeError("the generated C array does not round-trip to the .tflite bytes")
    out = []
    for name, text in (
        (f"{model_name}_decoder_int8.h", header),
        (f"{model_name}_decoder_int8.cc", source),
    ):
        p = staging / name
        write_text_atomic(p, text)
        lut = {"pixel_lut_symbol": carray.lut_symbol_for(model_name)} if activation == SIGMOID else {}
        out.append(
            {
                "path": name,
                **ArtifactSpec(Role.DECODER, Format.C, Precision.INT8, IO.INT8, graph, 1).to_json(),
                "sha256": sha256_file(p),
                "size_bytes": p.stat().st_size,
                "source": src["path"],
                "symbol": carray.symbol_for(model_name),
                **lut,
                "array_bytes": len(data),
            }
        )
    return out
