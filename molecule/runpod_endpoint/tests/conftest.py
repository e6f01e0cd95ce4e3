"""Fixtures of the runpod_endpoint scenario (helpers in runpod_lab.py)."""

from __future__ import annotations

import pytest
from runpod_lab import LAB_DIR, PHOTO, PHOTO_BYTES, Edge, FakeRunpod


@pytest.fixture
def lab_key() -> str:
    """The run's RunPod key (molecule.yml: lab_runpod_key)."""
    return "rpa_lab_" + (LAB_DIR / "runpod-key").read_text().strip()


@pytest.fixture
def fake_runpod(lab_key) -> FakeRunpod:
    return FakeRunpod(lab_key)


@pytest.fixture
def edge(host):
    stand_in = Edge(host)
    stand_in.reset()
    yield stand_in
    stand_in.reset()


@pytest.fixture
def ml_url(host) -> str:
    """What the role published for Immich's machineLearning.urls (recorded by converge.yml)."""
    return host.file("/etc/lab-immich-ml-url").content_string.strip()


@pytest.fixture
def photo(host) -> str:
    host.run_expect([0], f"printf '{PHOTO_BYTES}' > {PHOTO}")
    return PHOTO
