"""Speed scripts: each prints a table (``make perf``; numbers and commands in
docs/PERFORMANCE.md and docs/perf/). Speed is measured here, never in timed tests.

    python -m perf.loader_speed   clip loading per loader process (loader_choices.py: its tables)
    python -m perf.frames         frame extraction against one ffmpeg per video (frame_codecs.py)
    python -m perf.model_step     training-step time against the reference implementations
    python -m perf.model_flops    GMACs and parameters per clip
    python -m perf.bn_span_cost   what X3D-M's 4-clip BatchNorm costs
"""
