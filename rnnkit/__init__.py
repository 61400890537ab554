"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on PyTorch, from cells to applications.

Names are imported on first use, so ``import rnnkit`` (and the command line's start) stays light.
"""

__version__ = "0.1.0"

_LAZY = {
    "RnnkitError": ".errors", "TrainingStopped": ".errors",
    "RNNCell": ".nn.cells", "LSTMCell": ".nn.cells", "GRUCell": ".nn.cells", "Cell": ".nn.cells",
    "RNN": ".nn.layers", "LSTM": ".nn.layers", "GRU": ".nn.layers", "make_layer": ".nn.layers",
    "CharLM": ".tasks.charlm", "CharModel": ".tasks.charlm", "train": ".tasks.charlm",
    "DynamicEval": ".tasks.dynamic_eval",
    "TrainConfig": ".training.config", "fit": ".training.fit", "resume": ".training.fit", "Task": ".training.task",
    "Trainer": ".training.trainer",
    "Forecaster": ".tasks.forecast", "Detector": ".tasks.anomaly",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
