"""Area under the precision-recall curve (average precision) (pr_auc) as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``PRAUC()`` directly.
"""

import datasets
import evaluate
from sklearn.metrics import average_precision_score

_DESCRIPTION = "Area under the precision-recall curve (average precision): sklearn.metrics.average_precision_score(references, predictions)."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_KWARGS_DESCRIPTION = """
Args:
    predictions: scores or probabilities of the positive class (floats).
    references: true labels, 0 or 1, with both classes present.
Returns:
    {"pr_auc": float}
Examples:
    >>> metric = PRAUC(keep_in_memory=True)
    >>> metric.compute(predictions=[0.1, 0.4, 0.35, 0.8], references=[0, 0, 1, 1])
    {'pr_auc': 0.8333333333333333}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class PRAUC(evaluate.Metric):
    """Area under the precision-recall curve (average precision); see the module docstring."""

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
            raise ValueError("pr_auc needs both classes (0 and 1) among the references")
        return {"pr_auc": float(average_precision_score(references, predictions))}
