"""fgbg's pipeline: the Beam graph (build), its options and configuration,
the run's documents, Dataflow specifics, and the report's command line."""
