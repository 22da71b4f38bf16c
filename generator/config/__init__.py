"""Settings of each command as frozen dataclasses: the one place for every option's
help text, choices and range (the defaults themselves live in ``generator.defaults``).

``__main__`` builds each command's argument parser from these fields (``option`` puts
the help, parser and range into the field's metadata), and validation happens here, once,
so every entry point (CLI, tests, benchmarks) refuses the same bad values with the same
one-line ``OptionError`` naming the option. The face of the package: ``fields`` declares
options, ``train``, ``build`` and ``commands`` hold each command's settings.
"""

from __future__ import annotations

from generator.config.build import (
    MAX_FRAME_SIDE,
    MIN_FRAME_SIDE,
    BuildConfig,
    PublishedOptions,
)
from generator.config.commands import InfoConfig, IngestConfig, ServeConfig
from generator.config.fields import (
    FORMATS,
    RenamedOption,
    check_ranges,
    featviz_layer_list,
    flag_name,
    int_list,
    name_list,
    option,
    parse_formats,
    storage_options,
)
from generator.config.train import DEVICES, UINT32_MAX, TrainConfig, default_cache_dir

__all__ = [
    "DEVICES",
    "FORMATS",
    "MAX_FRAME_SIDE",
    "MIN_FRAME_SIDE",
    "UINT32_MAX",
    "BuildConfig",
    "IngestConfig",
    "InfoConfig",
    "PublishedOptions",
    "RenamedOption",
    "ServeConfig",
    "TrainConfig",
    "check_ranges",
    "default_cache_dir",
    "featviz_layer_list",
    "flag_name",
    "int_list",
    "name_list",
    "option",
    "parse_formats",
    "storage_options",
]
