"""The probe: before a benchmark run, is everything in place, will the run be bound by the
GPUs or by the loader, and about how long will it take and what will it score?

    make probe GPUS=4 WORKERS=8 STORE=data/frames/kinetics20_jpg
    .venv/bin/python -m probe --gpus 4 --workers 8 --store data/frames/kinetics20_jpg

For each config (the two benchmark models by default), on the device the run would use
(train/device.py), at the config's input size and per-process batch (batch_size / GPUS):

- demand (probe/measure.py): training clips/s of one process over a few steps after warm-up,
  on synthetic clips already on the device, times the process count; evaluation clips/s;
- supply: clips/s the trainer's DataLoader delivers from the store with GPUS x WORKERS loader
  processes (or as many as there are cores);
- verdict and prediction (probe/predict.py, pure arithmetic over the measured rates): which
  side bounds and by how much, the smallest WORKERS that keeps training fed, the time of the
  config's epochs and scheduled evaluations, and the score that time would give against the
  reference, labelled as a prediction;
- pre-flight checks (probe/checks.py), one line each with what to do.

Output: a table on the terminal and ``<results>/probe.json`` (with the system record runs
have). ``--quick`` uses tiny shapes and runs in seconds on a CPU.
"""
