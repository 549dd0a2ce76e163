"""fgbg's pipeline: the Beam graph and its command line (build), its options
and every check on them (options), the typed configuration the graph reads
(config), what a run prints (console), the run's documents
(run_documents), Dataflow specifics (dataflow), the report's command line
(report), and the local multi-process runner's worker watchdog
(worker_watchdog)."""
