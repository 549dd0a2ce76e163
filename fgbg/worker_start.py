"""What every Beam SDK worker process of a build with depth on torch does first.

`pipeline.build.run` names this module in Beam's --beam_plugins for such a
build (the only kind that loads triton), which each SDK worker (the local
runner's worker processes and Dataflow's alike) imports at its start,
before it unpickles any stage, so importing it is its whole job: it loads
triton before anything in the worker can load TensorFlow
(fgbg/import_order.py says why).
"""

from fgbg.import_order import load_triton_first

load_triton_first()
