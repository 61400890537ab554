"""Seeing inside recurrent networks: gradient flow through time and what hidden units track.

- :mod:`rnnkit.inspect.gradflow`: ``‖∂L_T/∂h_t‖`` against distance in time (vanishing and
  exploding gradients), ``rnnkit gradflow``.
- :mod:`rnnkit.inspect.neurons`: per-unit activations of a trained character model, their
  correlation with properties of the text, and the text coloured by a unit, ``rnnkit neurons``.

Submodules are imported on use, so ``import rnnkit`` stays light.
"""
