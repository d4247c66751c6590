"""Root mean squared error (rmse) as a local ``evaluate`` metric.

Load with ``evaluate.load("<path to this folder>")`` (no Hub access needed) or instantiate
``RMSE()`` directly.
"""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import mean_squared_error

_DESCRIPTION = "Root mean squared error: sqrt(mean((predictions - references) ** 2))."
_CITATION = "Pedregosa et al., Scikit-learn: Machine Learning in Python, JMLR 12, 2011."
_KWARGS_DESCRIPTION = """
Args:
    predictions: predicted values (floats).
    references: true values (floats).
Returns:
    {"rmse": float}
Examples:
    >>> metric = RMSE(keep_in_memory=True)
    >>> metric.compute(predictions=[1.0, 2.0], references=[1.0, 3.0])
    {'rmse': 0.7071067811865476}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RMSE(evaluate.Metric):
    """Root mean squared error; see the module docstring."""

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
        return {"rmse": float(np.sqrt(mean_squared_error(references, predictions)))}
