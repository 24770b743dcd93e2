"""Shared test helpers: tiny stores, tiny runs, fault injection, reference computations.

Test modules import these and conftest.py's session fixtures, never each other: a piece two
test modules need lives here, in the module named for what it helps (datasets, device,
faults, models, preprocess, score, train)."""
