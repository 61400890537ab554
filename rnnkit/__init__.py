"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on PyTorch, from cells to applications."""

__version__ = "0.1.0"

from .errors import RnnkitError
from .nn.cells import GRUCell, LSTMCell, RNNCell
from .nn.layers import GRU, LSTM, RNN
from .tasks.charlm import CharLM, train
from .training.config import TrainConfig
from .training.fit import fit, resume
from .training.task import Task
from .training.trainer import Trainer

# time series (pandas and statsmodels behind them) load on first use, keeping `import rnnkit` light
_LAZY = {"Forecaster": ".tasks.forecast", "Detector": ".tasks.anomaly"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "CharLM", "train", "fit", "resume", "Task",
           "Trainer", "TrainConfig", "RnnkitError", "__version__", "Forecaster", "Detector"]
