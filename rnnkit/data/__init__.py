"""Data for every task: text corpora (:mod:`.text`), time series (:mod:`.timeseries`, :mod:`.nab`).

Submodules are imported on use, so that ``import rnnkit`` does not load pandas.
"""
