"""Coefficient of determination R^2 (r2) as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``R2()`` directly.
"""

import datasets
import evaluate
from sklearn.metrics import r2_score

_DESCRIPTION = "Coefficient of determination R^2: 1 - sum((references - predictions) ** 2) / sum((references - mean(references)) ** 2)."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted values (floats).
    references: true values (floats).
Returns:
    {"r2": float}, nan for fewer than two molecules (R^2 is undefined there).
Examples:
    >>> metric = R2(keep_in_memory=True)
    >>> metric.compute(predictions=[1.0, 2.0, 2.0], references=[1.0, 2.0, 3.0])
    {'r2': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class R2(evaluate.Metric):
    """Coefficient of determination R^2; see the module docstring."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("float64"), "references": datasets.Value("float64")}
            ),
        )

    def _compute(self, predictions: list[float], references: list[float]) -> dict[str, float]:
        if len(references) < 2:
            return {"r2": float("nan")}
        return {"r2": float(r2_score(references, predictions))}
