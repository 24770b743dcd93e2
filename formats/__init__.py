"""The contracts between stages: the files one stage writes and a later one reads.

- ``formats.store``: the frame store (preprocess writes it; datasets, train and probe read it);
  ``formats.raw``: the decoded-frame file of its ``raw`` format.
- ``formats.results``: the run folder (train writes it; score reads it).
- ``formats.yaml_limits``: how every YAML input is read (presets, ``--set`` values,
  reference files): bounded in size, alias expansion, nesting and numbers.
- ``formats.files``: how every output of the project is written (a temporary name, fsync,
  rename), so a killed or failing writer never leaves a half-written file under the real name.

Nothing here imports a stage: every stage may import this package.
"""
