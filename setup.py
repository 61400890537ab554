"""Build the optional C speed-up (fused GRU and LN-LSTM steps, minGRU/minLSTM loops); the rest is in pyproject.toml.

The extension is optional: where no C compiler is found the install still succeeds, with a
warning, and rnnkit runs the same GRU and LN-LSTM steps as torch ops (``rnnkit.nn.gru_sequence``,
``rnnkit.nn.lnlstm_sequence``) and minGRU/minLSTM through their log-space scan (``rnnkit.nn.scan_sequence``).
"""

import sys

from setuptools import Extension, setup

# -fno-trapping-math lets the compiler turn the kernels' clamps into vector selects.
flags = [] if sys.platform == "win32" else ["-O3", "-fno-trapping-math"]
setup(ext_modules=[Extension("rnnkit.nn._gru_kernels", ["rnnkit/nn/_gru_kernels.c"], extra_compile_args=flags,
                             optional=True)])
