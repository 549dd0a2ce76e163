"""The private Beam APIs fgbg relies on (fgbg/beam_compat.py) still do what
fgbg needs. A Beam upgrade that moves or changes one fails here, naming it,
instead of deep inside a build or a dry run."""

from __future__ import annotations

import argparse

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from fgbg.beam_compat import declared_options, fnapi_environment_version, options_parser
from pipeline.options import FgbgOptions


def test_options_parser_parses_like_pipeline_options():
    parser = options_parser()
    assert isinstance(parser, argparse.ArgumentParser)
    StandardOptions._add_argparse_args(parser)
    known, unknown = parser.parse_known_args(["--runner=FnApiRunner", "--no_such_flag=1"])
    assert known.runner == "FnApiRunner" and unknown == ["--no_such_flag=1"]
    assert PipelineOptions(["--runner=FnApiRunner"]).view_as(StandardOptions).runner == known.runner


def test_declared_options_lists_an_options_class_own_flags():
    names = declared_options(FgbgOptions)
    assert names == sorted(names)
    assert {"bg", "fg", "output", "seed", "depth_model", "tft", "resume"} <= set(names)
    assert "runner" not in names


def test_the_dataflow_environment_version_is_a_version_string():
    version = fnapi_environment_version()
    assert isinstance(version, str) and version.isdigit()
