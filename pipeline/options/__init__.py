"""The build's options: every count, size and quality has one definition,
and every rule about their values is checked once, before any work.

One module per topic, each with its argparse group(s), its ranges and its
checks: inputs, generation (placement, blending, splits), outputs (file
encodings and what is written), depth. `--help` shows the groups in the
order the data flows. Beam's own options (runner, workers, Dataflow
settings) are accepted alongside.
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional, Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from fgbg.beam_compat import declared_options, options_parser
from fgbg.depth.checkpoints import Checkpoint
from pipeline.options import depth, generation, inputs, outputs
from pipeline.options.depth import DENSEDEPTH_INPUT_SIZE, depth_batch_size, model_input_size
from pipeline.options.rules import UsageError, parse_size

__all__ = [
    "DENSEDEPTH_INPUT_SIZE",
    "FgbgOptions",
    "UsageError",
    "check_options",
    "depth_batch_size",
    "help_parser",
    "model_input_size",
    "option_values",
    "parse_size",
    "unknown_arguments",
]


class FgbgOptions(PipelineOptions):
    """Options of `python -m pipeline.build`."""

    @classmethod
    def _add_argparse_args(cls, parser):
        inputs.add_arguments(parser)
        generation.add_arguments(parser)
        outputs.add_encoding_arguments(parser)
        depth.add_arguments(parser)
        outputs.add_arguments(parser)


def check_options(opts: FgbgOptions) -> Optional[Checkpoint]:
    """Every rule about the options' values, with a message naming the
    option; returns the transformers checkpoint --depth_model names, as
    described for the check, or None."""
    for name in ("bg", "fg"):
        if not getattr(opts, name):
            raise UsageError(f"--{name} is required (see --help)")
    inputs.check(opts)
    outputs.check(opts)
    generation.check(opts)
    generation.without_unused_model(opts)
    # Before the depth options' own checks, so that a relative checkpoint is
    # refused for what it predicts, whatever else it would need.
    generation.check_scene(opts, depth.checked_checkpoint(opts))
    return depth.check(opts)


def help_parser() -> argparse.ArgumentParser:
    """The --help text: our options by stage, then a pointer to Beam's."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.build",
        description="Build a foreground/background composite dataset with masks, depth "
        "maps, CSVs, TFRecords and statistics.",
        epilog="Any Apache Beam option is accepted too, e.g. --runner DataflowRunner, "
        "--project/--region/--temp_location for Dataflow. Local runs default to the "
        "FnApiRunner (the DirectRunner's engine) with one worker process per core; "
        "--direct_num_workers N or --direct_running_mode in_memory overrides that.",
    )
    FgbgOptions._add_argparse_args(parser)
    return parser


def option_values(opts: FgbgOptions) -> Dict[str, object]:
    """Our own options (not Beam's), as given or defaulted, by name."""
    values = opts.get_all_options()
    return {name: values.get(name) for name in declared_options(FgbgOptions)}


def unknown_arguments(argv: Sequence[str]) -> List[str]:
    """Arguments that no options class declares, ours or Beam's.

    Beam only logs and drops them, so a typo such as --placement_per_scale=1
    would quietly build with the default. This parses the way Beam does (its
    parser, every options class imported so far) and returns what is left.
    """
    parser = options_parser()
    # One class per name, as Beam does: a module loaded twice defines its
    # options class twice, and argparse refuses a repeated option.
    by_name: dict = {}
    for options_class in PipelineOptions.__subclasses__():
        by_name.setdefault(str(options_class), options_class)
    for options_class in by_name.values():
        options_class._add_argparse_args(parser)
    _, unknown = parser.parse_known_args(list(argv))
    return unknown
