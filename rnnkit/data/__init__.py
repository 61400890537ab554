"""Data for every task, one module per kind of data; imported on use, so ``import rnnkit`` stays light.

- :mod:`.text`: text corpora and the character vocabulary (language models).
- :mod:`.timeseries`, :mod:`.nab`: time series and the NAB anomaly benchmark.
- :mod:`.labelled_text`: labelled examples, word/character vocabularies, stratified folds (classification).
- :mod:`.parallel_text`: sentence pairs, subword tokenisers, BLEU (translation).
- :mod:`.audio`, :mod:`.speech`: audio reading and features; transcribed and digit-string datasets (speech).
- :mod:`.music`: piano rolls, MIDI in and out, audio rendering (music).
- :mod:`.batching`: padding, bucketing by length, masked losses (every variable-length task).
"""
