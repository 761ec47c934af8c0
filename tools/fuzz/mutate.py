"""Seeded mutators: bytes of a model file (bit flips, truncations, random runs, structured edits of the I/O
tensors), manifest.json objects, latent and image inputs, MNIST .npz files. Each returns (kind, mutated)."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import numpy as np

# --------------------------------------------------------------------------------------------- model bytes


def _bitflip(data: bytes, rng) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(len(b)))
        b[i] ^= 1 << int(rng.integers(8))
    return bytes(b)


def _random_run(data: bytes, rng) -> bytes:
    b = bytearray(data)
    n = int(rng.integers(1, 17))
    i = int(rng.integers(0, max(1, len(b) - n)))
    b[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b[: len(data)])


def _header_run(data: bytes, rng) -> bytes:
    """Random bytes in the first 256 bytes: root table offsets, vtables, protobuf field tags."""
    b = bytearray(data)
    n = int(rng.integers(1, 9))
    i = int(rng.integers(0, min(256, len(b) - n)))
    b[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


def _tail_run(data: bytes, rng) -> bytes:
    """Random bytes in the last 4 KB: flatbuffer tables (tensors, shapes, quantization) live at the end."""
    b = bytearray(data)
    n = int(rng.integers(1, 9))
    i = int(rng.integers(max(0, len(b) - 4096), len(b) - n))
    b[i : i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(b)


def _zero_run(data: bytes, rng) -> bytes:
    b = bytearray(data)
    n = int(rng.integers(1, 65))
    i = int(rng.integers(0, max(1, len(b) - n)))
    b[i : i + n] = bytes(n)
    return bytes(b)


def _truncate(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _insert_or_delete(data: bytes, rng) -> bytes:
    i = int(rng.integers(0, len(data)))
    n = int(rng.integers(1, 9))
    if rng.random() < 0.5:
        return data[:i] + rng.integers(0, 256, n, dtype=np.uint8).tobytes() + data[i:]
    return data[:i] + data[i + n :]


def _tflite_structured(data: bytes, rng) -> tuple[str, bytes]:
    """Edit the model's input/output tensors through the schema: what an I/O check must catch."""
    import flatbuffers
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))
    sg = model.subgraphs[0]
    which = "input" if rng.random() < 0.5 else "output"
    t = sg.tensors[(sg.inputs if which == "input" else sg.outputs)[0]]
    choice = rng.choice(["name", "shape", "dtype", "scale", "zero_point", "swap_io", "internal_scale"])
    if choice == "name":
        t.name = (t.name or b"") + b"_x"
    elif choice == "shape":
        shape = list(t.shape)
        k = int(rng.integers(len(shape)))
        shape[k] = int(shape[k]) + int(rng.choice([-1, 1, 2])) or 3
        t.shape = np.array(shape, np.int32)
        if t.shapeSignature is not None:
            t.shapeSignature = np.array(shape, np.int32)
    elif choice == "dtype":
        t.type = int(rng.choice([schema.TensorType.FLOAT32, schema.TensorType.INT8, schema.TensorType.UINT8]))
    elif (
        choice in ("scale", "zero_point") and t.quantization is not None and t.quantization.scale is not None
    ):
        if choice == "scale":
            t.quantization.scale = np.asarray(t.quantization.scale, np.float32) * np.float32(
                rng.choice([0.5, 2.0])
            )
        else:
            t.quantization.zeroPoint = np.asarray(t.quantization.zeroPoint, np.int64) + 1
    elif choice == "swap_io" and len(sg.outputs) > 1:
        sg.outputs = np.asarray(sg.outputs)[::-1].copy()
    else:
        # An internal tensor's quantization: changes the numbers, not the I/O (undetectable by an I/O check).
        quantized = [x for x in sg.tensors if x.quantization is not None and x.quantization.scale is not None]
        if not quantized:
            t.name = (t.name or b"") + b"_y"
            choice = "name"
        else:
            x = quantized[int(rng.integers(len(quantized)))]
            x.quantization.scale = np.asarray(x.quantization.scale, np.float32) * np.float32(1.5)
            choice = "internal_scale"
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return f"structured_{choice}", bytes(builder.Output())


def _onnx_structured(data: bytes, rng) -> tuple[str, bytes]:
    import onnx

    model = onnx.load_from_string(data)
    g = model.graph
    vi = (g.input if rng.random() < 0.5 else g.output)[0]
    choice = rng.choice(["name", "shape", "dtype", "initializer"])
    if choice == "name":
        old = vi.name
        vi.name = old + "_x"
        for node in g.node:  # keep the graph valid: only the name a caller sees changes
            node.input[:] = [vi.name if n == old else n for n in node.input]
            node.output[:] = [vi.name if n == old else n for n in node.output]
    elif choice == "shape":
        dims = vi.type.tensor_type.shape.dim
        k = int(rng.integers(len(dims)))
        dims[k].dim_value = max(1, dims[k].dim_value + int(rng.choice([-1, 1, 2])))
    elif choice == "dtype":
        vi.type.tensor_type.elem_type = int(rng.choice([onnx.TensorProto.INT8, onnx.TensorProto.DOUBLE]))
    else:
        inits = [t for t in g.initializer if t.data_type == onnx.TensorProto.FLOAT and t.raw_data]
        if inits:
            t = inits[int(rng.integers(len(inits)))]
            arr = np.frombuffer(t.raw_data, np.float32).copy()
            arr[int(rng.integers(arr.size))] *= -3
            t.raw_data = arr.tobytes()
    return f"structured_{choice}", model.SerializeToString()


BYTE_MUTATORS = {
    "bitflip": _bitflip,
    "random_run": _random_run,
    "header_run": _header_run,
    "tail_run": _tail_run,
    "zero_run": _zero_run,
    "truncate": _truncate,
    "insert_delete": _insert_or_delete,
}
# Structured edits are a quarter of the mix: random bytes rarely hit the few bytes that describe the I/O.
MODEL_WEIGHTS = {**dict.fromkeys(BYTE_MUTATORS, 0.75 / len(BYTE_MUTATORS)), "structured": 0.25}


def mutate_model(data: bytes, fmt: str, rng) -> tuple[str, bytes]:
    """One mutation of a .tflite / .onnx file that changes at least one byte."""
    names = list(MODEL_WEIGHTS)
    for _ in range(20):
        kind = str(rng.choice(names, p=list(MODEL_WEIGHTS.values())))
        if kind == "structured":
            try:
                kind, out = (_tflite_structured if fmt == "tflite" else _onnx_structured)(data, rng)
            except Exception:  # the editor itself failed on this file: fall back to bytes
                continue
        else:
            out = BYTE_MUTATORS[kind](data, rng)
        if out != data:
            return kind, out
    b = bytearray(data)
    b[int(rng.integers(len(b)))] ^= 0xFF  # always a change
    return "bitflip", bytes(b)


# --------------------------------------------------------------------------------------------- manifest

WRONG_VALUES = [None, "x", -1, 0, 1.5, True, [], {}, [1, "a"], float("nan"), 10**30, "../../x"]


def _paths(obj, prefix=()):
    """Every (path tuple) to a value in a JSON object."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((*prefix, i))
            out += _paths(v, (*prefix, i))
    return out


def _get_parent(obj, path):
    for k in path[:-1]:
        obj = obj[k]
    return obj


def mutate_manifest(
    manifest: dict, rng, outside_file: str | None = None, folder_name: str = "export"
) -> tuple[str, bytes]:
    """One mutated manifest.json (as bytes). ``outside_file``: an absolute path of a real, valid copy of an
    artifact outside the export folder, for the hostile escapes (its sha256 and size match)."""
    m = copy.deepcopy(manifest)
    kind = str(
        rng.choice(
            ["delete_field", "wrong_type", "escape_path", "broken_json", "version", "semantic"],
            p=[0.25, 0.3, 0.15, 0.1, 0.05, 0.15],
        )
    )
    arts = [i for i, a in enumerate(m["artifacts"]) if a.get("format") in ("tflite", "onnx")]
    if kind in ("delete_field", "wrong_type"):
        # Half the time aim at the fields the runtime reads; otherwise anywhere in the object.
        if rng.random() < 0.5:
            i = arts[int(rng.integers(len(arts)))]
            keys = ["path", "role", "format", "precision", "graph", "io", "batch", "sha256", "size_bytes"]
            keys += ["inputs", "outputs"] + (["output_roles"] if "output_roles" in m["artifacts"][i] else [])
            field = ("artifacts", i, str(rng.choice(keys)))
            if rng.random() < 0.3:
                t = str(rng.choice(["inputs", "outputs"]))
                field = ("artifacts", i, t, 0, str(rng.choice(["name", "shape", "dtype"])))
        elif rng.random() < 0.5:
            field = (
                str(rng.choice([k for k in ("model", "kind", "latent_dim", "prior", "artifacts") if k in m])),
            )
        else:
            all_paths = _paths(m)
            field = all_paths[int(rng.integers(len(all_paths)))]
        parent = _get_parent(m, field)
        if kind == "delete_field":
            if isinstance(parent, list):
                parent.pop(field[-1])
            else:
                parent.pop(field[-1], None)
        else:
            parent[field[-1]] = WRONG_VALUES[int(rng.integers(len(WRONG_VALUES)))]
        kind = f"{kind}:{'.'.join(map(str, field[:4]))}" if len(field) < 3 else f"{kind}:artifact.{field[2]}"
    elif kind == "escape_path":
        i = arts[int(rng.integers(len(arts)))]
        name = m["artifacts"][i]["path"]
        choices = [f"../../{name}", f"/etc/{name}", f"sub/../../{name}", "..", "", "."]
        if outside_file:  # a valid copy of the file (right sha256) outside the folder: the hostile escape
            choices += [outside_file, f"../../{'/'.join(outside_file.strip('/').split('/')[-2:])}"]
        choices.append(f"../{folder_name}/{name}")  # back inside, but a manifest with ".." is refused too
        m["artifacts"][i]["path"] = choices[int(rng.integers(len(choices)))]
        kind = "escape_path"
    elif kind == "version":
        m["manifest_version"] = (
            WRONG_VALUES[int(rng.integers(len(WRONG_VALUES)))] if rng.random() < 0.5 else 99
        )
    elif kind == "semantic":
        i = arts[int(rng.integers(len(arts)))]
        a = m["artifacts"][i]
        sub = str(
            rng.choice(
                ["batch", "latent_dim", "prior_cov", "duplicate", "scale", "roles_swapped", "model_name"]
            )
        )
        if sub == "batch":
            a["batch"] = a["batch"] + 1
        elif sub == "latent_dim" and "latent_dim" in m:
            m["latent_dim"] += 1
        elif sub == "prior_cov" and "prior" in m:
            m["prior"]["cov"] = [[1.0, 2.0], [2.0, 1.0]]
        elif sub == "scale" and "scale" in a["inputs"][0]:
            a["inputs"][0]["scale"] *= 2
        elif sub == "roles_swapped" and "output_roles" in a:
            a["output_roles"] = ["bogus"] * len(a["output_roles"])
        elif sub == "model_name":
            m["model"] = "../../evil"
        else:
            m["artifacts"].append(copy.deepcopy(a))
            sub = "duplicate"
        kind = f"semantic:{sub}"
    if kind == "broken_json":
        text = json.dumps(m).encode()
        sub = str(rng.choice(["truncate", "bytes", "empty", "not_object", "deep", "not_utf8"]))
        out = {
            "truncate": text[: int(rng.integers(len(text)))],
            "bytes": _random_run(text, rng),
            "empty": b"",
            "not_object": b"[1, 2, 3]",
            "deep": b"[" * 100000 + b"]" * 100000,
            "not_utf8": b"\xff\xfe" + text,
        }[sub]
        return f"broken_json:{sub}", out
    return kind, json.dumps(m).encode()


# --------------------------------------------------------------------------------------------- inputs


def mutate_input(role: str, shape: tuple[int, ...], rng):
    """(kind, value) for a decoder (shape (n, d)) or image model (shape (n, 28, 28, 1)). Valid inputs are
    latents N(0, I) / images in [0, 1]."""
    good = (
        rng.standard_normal(shape).astype(np.float32) if role == "decoder" else rng.random(shape, np.float32)
    )
    kinds = [
        "nan",
        "inf",
        "neg_inf",
        "huge",
        "float64_overflow",
        "wrong_last_dim",
        "one_dim",
        "extra_dim",
        "empty",
        "scalar",
        "int_dtype",
        "bool",
        "complex",
        "string",
        "object",
        "none",
        "ragged_list",
        "float16",
        "bytes_0_255",
        "negative",
        "tiny_overshoot",
        "list_of_lists",
        "transposed",
    ]
    kind = str(rng.choice(kinds))
    x = good.copy()
    idx = tuple(int(rng.integers(s)) for s in shape)
    if kind == "nan":
        x[idx] = np.nan
    elif kind == "inf":
        x[idx] = np.inf
    elif kind == "neg_inf":
        x[idx] = -np.inf
    elif kind == "huge":
        x = x * np.float32(1e30)
    elif kind == "float64_overflow":
        x = x.astype(np.float64) * 1e300
    elif kind == "wrong_last_dim":
        x = np.concatenate([x, x[..., :1]], axis=-1)
    elif kind == "one_dim":
        x = x.reshape(-1)
    elif kind == "extra_dim":
        x = x[..., None, None]
    elif kind == "empty":
        x = x[:0]
    elif kind == "scalar":
        x = np.float32(0.5)
    elif kind == "int_dtype":
        x = (x * 3).astype(np.int64)
    elif kind == "bool":
        x = x > 0.5
    elif kind == "complex":
        x = x.astype(np.complex64)
    elif kind == "string":
        x = x.astype(str)
    elif kind == "object":
        x = x.astype(object)
    elif kind == "none":
        x = None
    elif kind == "ragged_list":
        x = [list(r.reshape(-1)) for r in x] + [[1.0]]
    elif kind == "float16":
        x = x.astype(np.float16)
    elif kind == "bytes_0_255":
        x = (np.abs(x) * 255).clip(0, 255).astype(np.uint8) if role != "decoder" else x * 255
    elif kind == "negative":
        x = -np.abs(x) - 0.5
    elif kind == "tiny_overshoot":
        x = np.clip(x, 0, 1) * np.float32(1.0005) if role != "decoder" else x
    elif kind == "list_of_lists":
        x = x.tolist()
    elif kind == "transposed":
        x = np.swapaxes(x, 0, -1)
    return kind, x


# --------------------------------------------------------------------------------------------- MNIST .npz


def _npz_bytes(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def mutate_npz(arrays: dict, rng) -> tuple[str, bytes]:
    """A mutated keras-layout MNIST .npz built from ``arrays`` (x_train, y_train, x_test, y_test)."""
    a = {k: v.copy() for k, v in arrays.items()}
    kind = str(
        rng.choice(
            [
                "bytes",
                "truncate",
                "missing_key",
                "dtype",
                "shape",
                "labels",
                "length",
                "empty",
                "pickle",
                "not_zip",
                "member_garbage",
            ]
        )
    )
    key = str(rng.choice(list(a)))
    if kind in ("bytes", "truncate"):
        data = _npz_bytes(a)
        return kind, (_random_run(data, rng) if kind == "bytes" else _truncate(data, rng))
    if kind == "missing_key":
        a.pop(key)
    elif kind == "dtype":
        a[key] = a[key].astype(str(rng.choice(["float32", "int64", "int8", "float16"])))
    elif kind == "shape":
        a[key] = a[key].reshape(len(a[key]), -1) if a[key].ndim == 3 else a[key][:, None]
    elif kind == "labels":
        k = "y_train" if rng.random() < 0.5 else "y_test"
        a[k] = a[k].astype(np.int64)
        a[k][0] = int(rng.choice([10, -1, 255]))
    elif kind == "length":
        a[key] = a[key][:-1]
    elif kind == "empty":
        a[key] = a[key][:0]
    elif kind == "pickle":
        a[key] = np.array([{"a": 1}], dtype=object)
        buf = io.BytesIO()
        np.savez(buf, **a)  # object arrays need pickle; the loader must refuse them (allow_pickle=False)
        return kind, buf.getvalue()
    elif kind == "not_zip":
        return kind, rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    elif kind == "member_garbage":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for k, v in a.items():
                raw = io.BytesIO()
                np.save(raw, v)
                data = raw.getvalue()
                if k == key:
                    data = data[:10] + rng.integers(0, 256, 60, dtype=np.uint8).tobytes() + data[70:]
                zf.writestr(f"{k}.npy", data)
        return kind, buf.getvalue()
    return kind, _npz_bytes(a)
