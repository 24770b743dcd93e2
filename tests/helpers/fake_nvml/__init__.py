"""A stand-in for NVML's Python bindings (``pynvml``), for the energy tests: put this folder
first on PYTHONPATH (subprocess runs) or pass the module itself (in-process code)."""
