"""Area under the ROC curve (roc_auc) as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``ROCAUC()`` directly.
"""

import datasets
import evaluate
from sklearn.metrics import roc_auc_score

_DESCRIPTION = "Area under the ROC curve: sklearn.metrics.roc_auc_score(references, predictions)."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores or probabilities of the positive class (floats).
    references: true labels, 0 or 1, with both classes present.
Returns:
    {"roc_auc": float}
Examples:
    >>> metric = ROCAUC(keep_in_memory=True)
    >>> metric.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'roc_auc': 0.75}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ROCAUC(evaluate.Metric):
    """Area under the ROC curve; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[int]) -> dict[str, float]:
        if len(set(references)) < 2:
            raise ValueError("roc_auc needs both classes (0 and 1) among the references")
        return {"roc_auc": float(roc_auc_score(references, predictions))}
