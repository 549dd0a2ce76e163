"""fgbg's pipeline stages: one module per job, each holding its Beam
PTransforms with their DoFns and the pure numpy/PIL functions they call."""
