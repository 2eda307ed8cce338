"""Saved models are untrusted input: their stored architecture is read as JSON and checked against an allow-list
of layer classes before Keras deserializes anything (a ``Lambda`` layer runs marshalled Python code on load).

Formats: HDF5 (``.h5``: the ``model_config`` attribute), the Keras v3 archive (``.keras``: ``config.json``, then
loaded with Keras' ``safe_mode``), a SavedModel directory (``keras_metadata.pb``) and hls4ml's JSON + weights
pair (the architecture from ``model.to_json()`` and an HDF5 file from ``model.save_weights``).
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

from flow.errors import FlowError

CONTAINERS = {"Functional", "Sequential", "Model"}  # the top-level model; nested models are refused


def allowed_classes() -> set[str]:
    """Layer classes a stored model may contain: what the flow takes, what normalization rewrites, and the
    unquantized layers it refuses later with a hint (none of them holds code)."""
    from flow.modelio import SUPPORTED_LAYERS, UNQUANTIZED  # import cycle: flow.modelio imports flow.model_files
    from flow.normalize import IDENTITIES

    return SUPPORTED_LAYERS | IDENTITIES | set(UNQUANTIZED) | {"Softmax", "ReLU"}


def stored_layers(architecture: dict) -> Iterator[tuple[str, str]]:
    """(layer name, class name) of every layer of a stored model architecture (Keras' JSON form)."""
    config = architecture.get("config", {})
    layers = config.get("layers") if isinstance(config, dict) else None
    if not isinstance(layers, list):
        raise FlowError("the stored model has no list of layers (not a Keras Functional/Sequential model)")
    for layer in layers:
        if not isinstance(layer, dict):
            raise FlowError("the stored model has a malformed layer entry")
        name = (layer.get("config") or {}).get("name") or layer.get("name") or "?"
        yield str(name), str(layer.get("class_name"))


def check_architecture(architecture: dict, source: str) -> None:
    """Refuse a stored architecture with a layer class outside the allow-list, naming the layer."""
    top = architecture.get("class_name")
    if top not in CONTAINERS:
        raise FlowError(f"{source}: the stored model is a {top!r}, not a Keras Functional or Sequential model")
    allowed = allowed_classes()
    for name, kind in stored_layers(architecture):
        if kind == "Lambda":
            raise FlowError(
                f"{source}: layer '{name}' (Lambda) stores Python code that would run on load; refused before "
                "loading. Replace it by a supported layer"
            )
        if kind not in allowed:
            from flow.modelio import SUPPORTED_LAYERS  # import cycle: flow.modelio imports flow.model_files

            raise FlowError(
                f"{source}: layer '{name}' ({kind}) is not supported; supported types: "
                f"{', '.join(sorted(SUPPORTED_LAYERS))}"
            )


def _h5_architecture(path: Path) -> dict:
    import h5py  # h5py: ~0.1 s to import; only for .h5 files

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise FlowError(f"{path}: not a readable HDF5 file ({exc})") from None
    if raw is None:
        raise FlowError(f"{path}: holds no model architecture (weights only? give model.json and model.weights)")
    return _parse(raw.decode() if isinstance(raw, bytes) else raw, path)


def _keras_archive_architecture(path: Path) -> dict:
    try:
        with zipfile.ZipFile(path) as archive:
            return _parse(archive.read("config.json").decode(), path)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise FlowError(f"{path}: not a Keras .keras archive with a config.json ({exc})") from None


def _saved_model_architecture(path: Path) -> dict:
    from keras.protobuf import saved_metadata_pb2  # Keras imports TensorFlow (~2 s)

    meta = path / "keras_metadata.pb"
    if not meta.is_file():
        raise FlowError(f"{path}: a SavedModel directory without keras_metadata.pb (not saved by Keras)")
    proto = saved_metadata_pb2.SavedMetadata()
    try:
        proto.ParseFromString(meta.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise FlowError(f"{path}/keras_metadata.pb: unreadable ({exc})") from None
    for node in proto.nodes:
        if node.node_path == "root":
            return {"class_name": json.loads(node.metadata).get("class_name"), "config": _root_config(proto, path)}
    raise FlowError(f"{path}/keras_metadata.pb: no root model")


def _root_config(proto, path: Path) -> dict:
    """The layer list of a SavedModel: every layer node's class and name (the metadata of each Keras object)."""
    layers = []
    for node in proto.nodes:
        if node.identifier not in ("_tf_keras_layer", "_tf_keras_input_layer", "_tf_keras_network",
                                   "_tf_keras_model", "_tf_keras_sequential"):  # fmt: skip
            continue
        if node.node_path == "root":
            continue
        meta = json.loads(node.metadata)
        layers.append({"class_name": meta.get("class_name"), "config": {"name": meta.get("name")}})
    return {"layers": layers}


def _parse(text: str, path: Path) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowError(f"{path}: the stored architecture is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise FlowError(f"{path}: the stored architecture is not a JSON object")
    return data


def load_checked(path: Path, custom_objects: dict):
    """Inspect, then load a .h5 / .keras file or a SavedModel directory."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    if path.is_dir():
        check_architecture(_saved_model_architecture(path), str(path))
        return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)
    if path.suffix == ".keras":
        check_architecture(_keras_archive_architecture(path), str(path))
        return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False, safe_mode=True)
    if path.suffix in (".h5", ".hdf5"):
        check_architecture(_h5_architecture(path), str(path))
        return tf.keras.models.load_model(path, custom_objects=custom_objects, compile=False)
    raise FlowError(f"{path}: unknown model format; give a .h5/.hdf5 or .keras file, or a SavedModel directory")


def load_json_weights(json_path: Path, weights_path: Path, custom_objects: dict):
    """hls4ml's pair: the architecture JSON (inspected) and the weights HDF5."""
    import tensorflow as tf  # TensorFlow: ~2 s to import

    for path, key in ((json_path, "model.json"), (weights_path, "model.weights")):
        if not path.is_file():
            raise FlowError(f"{key}: file not found: {path}")
    text = json_path.read_text()
    check_architecture(_parse(text, json_path), str(json_path))
    model = tf.keras.models.model_from_json(text, custom_objects=custom_objects)
    try:
        model.load_weights(weights_path)
    except Exception as exc:  # h5py / keras errors for mismatching files
        detail = " ".join(str(exc).split())[:300]
        raise FlowError(f"{weights_path}: cannot load these weights into {json_path} ({detail})") from None
    return model
