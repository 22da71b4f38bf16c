"""The public surface, pinned (as torchlens' ``tests/test_api_surface.py`` does): the names
``generator`` and each stage's face export, and the rule that examples use only those.

A change to a face is a change to what users and the other stages may rely on: it should
show up here, in review, not by accident. Private modules (``store/_writer.py``) and a
face's other submodules may change freely.
"""

from __future__ import annotations

import ast
import importlib
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

FACES: dict[str, set[str]] = {
    "generator": {
        "NetlapseError",
        "Recorder",
        "RunReader",
        "__version__",
        "animation",
        "build_model",
        "open_run",
    },
    "generator.errors": {
        "DataError",
        "EncodeError",
        "ExamplePoolError",
        "FeatvizLayerError",
        "LayerChoiceError",
        "LiveSiteError",
        "ModelOutputError",
        "NetlapseError",
        "OptionError",
        "OtherRankFailedError",
        "ProbeError",
        "RecorderClosedError",
        "StoreError",
        "StoreNotFoundError",
        "one_line",
        "redact",
    },
    "generator.analysis": {
        "RunSimilarity",
        "dead_share",
        "kernel_change",
        "run_similarity",
        "top_classes",
        "top_confused",
        "wants_log_scale",
    },
    "generator.build": {
        "LiveSite",
        "build",
        "discover_stores",
    },
    "generator.config": {
        "BuildConfig",
        "DEVICES",
        "FORMATS",
        "InfoConfig",
        "IngestConfig",
        "MAX_FRAME_SIDE",
        "MIN_FRAME_SIDE",
        "PublishedOptions",
        "RenamedOption",
        "ServeConfig",
        "TrainConfig",
        "UINT32_MAX",
        "check_ranges",
        "default_cache_dir",
        "featviz_layer_list",
        "flag_name",
        "int_list",
        "name_list",
        "option",
        "parse_formats",
        "storage_options",
    },
    "generator.data": {
        "DEMO_CLASSES",
        "ImageFolderData",
        "IngestReport",
        "ingest_video",
        "load_image_folder",
        "load_uint8",
        "make_demo_dataset",
        "storable",
        "storable_text",
        "to_model_input",
    },
    "generator.encode": {
        "AV1",
        "H264",
        "PaletteYuv",
        "VIDEO_CODECS",
        "VideoCodec",
        "encoder_threads",
        "palette_png_bytes",
        "png_bytes",
        "quantise",
        "to_rgb",
        "write_gif",
        "write_mp4",
        "write_png",
        "write_poster",
        "write_video",
        "write_videos",
        "write_webm",
        "yuv420_frame",
        "yuv420_planes",
    },
    "generator.integrations": {
        "NetlapseCallback",
    },
    "generator.record": {
        "BackgroundWriter",
        "ExamplePool",
        "FeatvizSettings",
        "LayerChoiceError",
        "ModelCapture",
        "OutputChoice",
        "ProbeError",
        "ProbeSet",
        "Recorder",
        "RecorderClosedError",
        "RecorderSetup",
        "Recording",
        "Setting",
        "capture_outputs",
        "channel_statistics",
        "chosen_layers",
        "default_layers",
        "describe_layers",
        "featviz_spec",
        "pick_indices",
        "pick_logits",
        "prepare_probes",
        "recorded_kernels",
        "recorded_settings",
        "split_pool",
        "top_examples",
        "trace",
        "training_recorder",
        "untouched",
        "unwrapped",
        "user_metric_name",
        "visualizer_for",
        "with_sources",
    },
    "generator.render": {
        "COLORMAPS",
        "ContactSheet",
        "Frames",
        "Mapped",
        "SCALE_MODES",
        "Scales",
        "channel_frames",
        "choose_epochs",
        "compute_scales",
        "contact_sheet",
        "grid_frames",
        "kernel_frames",
        "layer_frames",
        "map_values",
        "pad_frames",
        "palette",
        "probe_frames",
    },
    "generator.site": {
        "inside",
        "make_environment",
        "render_site",
        "serve",
        "write_bytes_atomic",
        "write_rendered",
    },
    "generator.store": {
        "ACTIVATION_DTYPES",
        "EpochRecord",
        "ExamplePoolRecord",
        "FEATVIZ_KINDS",
        "FeatvizSpec",
        "GRADIENT_FIELDS",
        "GradientSpec",
        "GradientStats",
        "HISTOGRAM_KINDS",
        "Histograms",
        "LayerSpec",
        "READABLE_VERSIONS",
        "RootAttrs",
        "RunReader",
        "SCALAR_METRICS",
        "SCHEMA_VERSION",
        "STAT_FIELDS",
        "StoreLocation",
        "StoreURL",
        "StoreWriter",
        "check_remote_out",
        "discard_created",
        "example_layers",
        "file_stem",
        "gradient_layers",
        "gradient_path",
        "histogram_layers",
        "histogram_path",
        "is_url",
        "open_run",
        "parse_storage_option",
        "store_location",
        "total_size",
        "use_storage_options",
    },
    "generator.train": {
        "check_out",
        "evaluate",
        "run_training",
        "split_indices",
    },
}


@pytest.mark.parametrize("face", sorted(FACES))
def test_each_face_exports_exactly_its_pinned_names(face: str) -> None:
    module = importlib.import_module(face)
    assert set(module.__all__) == FACES[face]
    missing = [name for name in module.__all__ if getattr(module, name, None) is None]
    assert not missing, f"{face}.__all__ names what it does not define: {missing}"


def test_every_package_has_a_face_with_all() -> None:
    """A stage folder without ``__all__`` has no public face to pin."""
    packages = sorted(p.parent for p in (REPO / "generator").rglob("__init__.py"))
    faceless = []
    for package in packages:
        if package.name == "templates":
            continue
        tree = ast.parse((package / "__init__.py").read_text(encoding="utf-8"))
        targets = [t for node in tree.body if isinstance(node, ast.Assign) for t in node.targets]
        if not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            faceless.append(package.relative_to(REPO).as_posix())
    assert not faceless, f"no __all__ in: {faceless}"


def example_source(file: Path) -> str:
    """An example's Python: the script, or a notebook's code cells."""
    if file.suffix == ".ipynb":
        cells = json.loads(file.read_text(encoding="utf-8"))["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    return file.read_text(encoding="utf-8")


def example_imports(file: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every ``from generator... import name`` of an example and every
    ``generator.name`` it uses; ``(module, "")`` for ``import generator...``."""
    found = []
    for node in ast.walk(ast.parse(example_source(file))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("generator"):
            found += [(node.module or "", alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.startswith("generator")]
        elif isinstance(node, ast.Attribute) and ast.unparse(node.value) == "generator":
            found.append(("generator", node.attr))
    return found


def test_examples_import_only_public_faces() -> None:
    """What a user copies from an example must keep working: only pinned faces' names."""
    files = sorted((REPO / "examples").glob("*.py")) + sorted((REPO / "examples").glob("*.ipynb"))
    assert files and files[-1].suffix == ".ipynb"
    offenders = [
        f"{file.name}: from {module} import {name}"
        for file in files
        for module, name in example_imports(file)
        if module not in FACES or (name and name not in FACES[module])
    ]
    assert not offenders, "examples must import only pinned faces: " + "; ".join(offenders)
