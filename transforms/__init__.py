"""fgbg's pipeline stages: one module per stage, each a Beam PTransform with
its DoFns and the pure numpy/PIL functions it calls."""
