"""Recurrent cells and layers: the registry of cells, the layers that run them, initialisations."""
