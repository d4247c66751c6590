"""Downstream evaluation: featurizers, probes, local ``evaluate`` metrics, the benchmark and its reports;
the labelled tasks and their splits (:mod:`~cmim_hf.evaluation.tasks`), model comparisons
(:mod:`~cmim_hf.evaluation.comparison`), the generative figures of a checkpoint
(:mod:`~cmim_hf.evaluation.generative`) and the MOSES metrics (:mod:`~cmim_hf.evaluation.moses_metrics`).

Typical use::

    from cmim_hf.evaluation import run_benchmark
    results = run_benchmark({"ecfp4": "ecfp4", "mine": my_embed_fn}, ["esol", "bbbp"],
                            split="scaffold", seeds=5, probes=["svm", "rf"], out_dir="runs/bench")
"""

from cmim_hf._compat import renamed_name
from cmim_hf.evaluation.benchmark import BenchmarkResults, evaluate_fold, run_benchmark
from cmim_hf.evaluation.featurizers import (
    BUILTIN_FEATURIZERS,
    EMBEDDING_SOURCES,
    CheckpointFeaturizer,
    Featurizer,
    FeaturizerError,
    FeaturizerRuntimeError,
    descriptor_features,
    ecfp4_features,
    featurize,
    resolve_featurizer,
)
from cmim_hf.evaluation.metrics import (
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    compute_metric,
    load_metric,
    metric_path,
)
from cmim_hf.evaluation.probes import PROBE_NAMES, ProbeError, ProbeFit, build_probe, fit_probe

__all__ = [
    "BUILTIN_FEATURIZERS",
    "CLASSIFICATION_METRICS",
    "EMBEDDING_SOURCES",
    "PROBE_NAMES",
    "REGRESSION_METRICS",
    "BenchmarkResults",
    "CheckpointFeaturizer",
    "Featurizer",
    "FeaturizerError",
    "FeaturizerRuntimeError",
    "ProbeError",
    "ProbeFit",
    "build_probe",
    "compute_metric",
    "descriptor_features",
    "ecfp4_features",
    "evaluate_fold",
    "featurize",
    "fit_probe",
    "load_metric",
    "metric_path",
    "resolve_featurizer",
    "run_benchmark",
]

__getattr__ = renamed_name(__name__, "CMIMFeaturizer", "CheckpointFeaturizer", CheckpointFeaturizer)
