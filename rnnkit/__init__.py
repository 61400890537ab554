"""rnnkit: recurrent neural networks (RNN, LSTM, GRU) on PyTorch, from cells to applications."""

from .cells import GRUCell, LSTMCell, RNNCell
from .errors import RnnkitError
from .layers import GRU, LSTM, RNN
from .tasks.charlm import CharLM, train
from .trainer import TrainConfig, Trainer

__version__ = "0.1.0"

__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "CharLM", "train",
           "Trainer", "TrainConfig", "RnnkitError", "__version__"]
