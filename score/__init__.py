"""Scoring stage: read finished (or running) training results and score machines.

Reads only result files (run.json, epochs.csv, system.json; a heartbeat only by its age) and
the reference file, as the neutral contract formats/results.py names them; it never imports
the trainer, datasets or models.
"""


class ScoreError(Exception):
    """A user error (bad path, bad file). The message is one line and names the file."""
