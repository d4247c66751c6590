"""Mean absolute error (mae) as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``MAE()`` directly.
"""

import datasets
import evaluate
from sklearn.metrics import mean_absolute_error

_DESCRIPTION = "Mean absolute error: mean(abs(predictions - references))."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted values (floats).
    references: true values (floats).
Returns:
    {"mae": float}
Examples:
    >>> metric = MAE(keep_in_memory=True)
    >>> metric.compute(predictions=[1.0, 2.0], references=[1.0, 3.0])
    {'mae': 0.5}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MAE(evaluate.Metric):
    """Mean absolute error; see the module docstring."""

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
        return {"mae": float(mean_absolute_error(references, predictions))}
