"""The files Beam's shared model (--depth_share_model) leaves behind.

RunInference's share_model_across_processes serves the model from one
process and publishes where, in `<tag>*.address` and `<tag>*.lock` files in
the temporary folder (Beam's multi_process_shared), which nothing removes:
one build left four. A local build names its models' tag itself
(`new_tag`, RunInference's model_identifier) so that the launcher, which
shares the workers' temporary folder, can remove them when the build ends
(`remove_files`). Each stage that runs the model gets its own tag
(`stage_tag`), as Beam's own random tags would be: two stages never share
one served model.
"""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import uuid
from typing import Optional

PREFIX = "fgbg-depth-"


def new_tag() -> str:
    """A tag no other build on this machine uses."""
    return f"{PREFIX}{uuid.uuid4().hex}"


def stage_tag(tag: Optional[str], stage: str) -> Optional[str]:
    """The tag of one stage's RunInference; None (Beam's random tag) without one."""
    return f"{tag}-{stage}" if tag else None


def remove_files(tag: str, folder: Optional[str] = None) -> None:
    """Remove what the shared models tagged `tag` left in `folder` (the
    temporary folder)."""
    pattern = os.path.join(folder or tempfile.gettempdir(), glob.escape(tag) + "*")
    for path in glob.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
