"""Fixtures of the reliability tests: the corpus environment (a saved four-modality run and a
plain, card-less dataset), built once per test process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from corpus import Env, build_env


@pytest.fixture(scope="session")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: extra threads only contend for the CPUs
    try:
        yield build_env(tmp_path_factory.mktemp("reliability"))
    finally:
        torch.set_num_threads(threads)
