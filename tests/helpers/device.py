"""Device facts made up by hand (no GPU needed), shared by the trainer's device decision
tests and the probe's checks."""

from __future__ import annotations

import dataclasses

from train.device import DeviceFacts

# A working 4-GPU machine.
GOOD = DeviceFacts(cuda_available=True, device_count=4, torch_version="2.14.1",
                   torch_cuda="13.0", nvidia_devices=4, driver="580.82.07", driver_cuda="13.0")
# GPUs with a driver too old for PyTorch's CUDA 13 build: torch sees no CUDA.
OLD_DRIVER = dataclasses.replace(GOOD, cuda_available=False, device_count=0,
                                 driver="535.104.05", driver_cuda="12.2")
# A machine without any NVIDIA trace.
NO_GPU = DeviceFacts(cuda_available=False, device_count=0, torch_version="2.14.1",
                     torch_cuda="13.0", nvidia_devices=0, driver=None, driver_cuda=None)
