"""Helpers of the data-infrastructure tests: a tiny character processor and a JSONL writer."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from omnifuse.modalities.base import MediaError, Processor


class CharProcessor(Processor[Tensor]):
    """Text -> character codes; fast stand-in for the real text processor in pipeline tests.

    In training mode it appends one random code (from torch's global RNG), so tests can see
    whether augmentation is reproducible.
    """

    modality = "text"

    def load(self, raw: Any) -> Tensor:
        if not isinstance(raw, str) or not raw.strip():
            raise MediaError(repr(raw), "empty text")
        codes = [ord(c) % 128 for c in raw]
        if self.training:
            codes.append(int(torch.randint(0, 128, ()).item()))
        return torch.tensor(codes, dtype=torch.long)

    def collate(self, samples: Sequence[Tensor]) -> dict[str, Tensor]:
        length = max(s.numel() for s in samples)
        ids = torch.zeros(len(samples), length, dtype=torch.long)
        mask = torch.zeros(len(samples), length, dtype=torch.bool)
        for i, s in enumerate(samples):
            ids[i, : s.numel()] = s
            mask[i, : s.numel()] = True
        return {"input_ids": ids, "attention_mask": mask}


def write_jsonl(path: Path, rows: Sequence[Any]) -> Path:
    """Rows as JSONL; non-dict rows (strings) are written verbatim."""
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path
