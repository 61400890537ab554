"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on PyTorch, from cells to applications."""

from .errors import RnnkitError
from .nn.cells import GRUCell, LSTMCell, RNNCell
from .nn.layers import GRU, LSTM, RNN
from .tasks.charlm import CharLM, train
from .training.trainer import TrainConfig, Trainer

# time series (pandas and statsmodels behind them) load on first use, keeping `import rnnkit` light
_LAZY = {"Forecaster": ".tasks.forecast", "Detector": ".tasks.anomaly"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "CharLM", "train",
           "Trainer", "TrainConfig", "RnnkitError", "__version__", "Forecaster", "Detector"]
