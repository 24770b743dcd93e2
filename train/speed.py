"""Speed options (precision, channels_last, compile). The workload is fp32 without them; any of
them makes a run non-compliant, but they let a machine show what it could do."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class SpeedOptions:
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def from_config(cls, config: dict) -> SpeedOptions:
        return cls(config["precision"], config["channels_last"], config["compile"])

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last_3d if self.channels_last else torch.contiguous_format

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model.to(memory_format=self.memory_format) if self.channels_last else model

    def compile_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(model) if self.compile else model

    def autocast(self, device: torch.device) -> AbstractContextManager | None:
        """Mixed precision for forward passes, or None for fp32."""
        if self.precision == "fp32":
            return None
        return torch.autocast(device.type, dtype=DTYPES[self.precision])

    def grad_scaler(self, device: torch.device) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not."""
        return torch.amp.GradScaler(device.type) if self.precision == "fp16" else None
