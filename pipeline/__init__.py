"""fgbg: assembles the Beam graph that builds the dataset, and its options."""
import transforms  # noqa: F401  (decides TF_USE_LEGACY_KERAS before anything imports TF)
