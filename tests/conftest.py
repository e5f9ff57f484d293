"""Shared fixtures: procedural audio, shared-data discovery and tiny-model factories.

Tiny models: each backend's test module relies on a factory ``make_<name>(out_dir)`` in
``tests/factories/<anything>.py`` that builds a random-weight model from a config object and
saves it with ``save_pretrained``. The session-scoped ``tiny_model`` fixture returns a
function ``tiny_model(name) -> Path`` that builds each model once per test session, so tests
load it through the same ``from_pretrained(path)`` code a user hits.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ESC10 = SHARED / "data" / "esc10"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("AURALENS_NO_PROGRESS", "1")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test session uses its own cache directory, never the user's."""
    monkeypatch.setenv("AURALENS_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def sr() -> int:
    return 16000


@pytest.fixture
def sine(sr: int) -> np.ndarray:
    """1 s of a 440 Hz sine at 0.5 amplitude, float32 ``[T]``."""
    t = np.arange(sr) / sr
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture
def noise(sr: int) -> np.ndarray:
    """1 s of white noise (seeded), float32 ``[T]``."""
    return (0.1 * np.random.default_rng(0).standard_normal(sr)).astype(np.float32)


@pytest.fixture(scope="module")
def torch_single_thread():
    """One torch thread for a module: tiny tensors run far faster that way on a busy machine.

    Use with ``pytestmark = pytest.mark.usefixtures("torch_single_thread")``.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def esc10() -> Path:
    """../shared/data/esc10, or skip when it is absent."""
    if not (ESC10 / "meta" / "esc50.csv").exists():
        pytest.skip("../shared/data/esc10 is not available")
    return ESC10


def _find_factory(name: str):
    import factories  # tests/factories (tests/ is on sys.path via rootdir conftest)

    func_name = "make_" + name.replace("-", "_")
    for info in pkgutil.iter_modules(factories.__path__):
        module = importlib.import_module(f"factories.{info.name}")
        if hasattr(module, func_name):
            return getattr(module, func_name)
    raise LookupError(f"no tiny-model factory {func_name} in tests/factories")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory):
    """``tiny_model("ast") -> Path`` of a saved random-weight model, built once per session."""
    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            out = tmp_path_factory.mktemp(f"tiny-{name}")
            _find_factory(name)(out)
            built[name] = out
        return built[name]

    return get


@pytest.fixture(scope="module")
def sonify_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh embeddings/latents cache for one test module."""
    return tmp_path_factory.mktemp("sonify-cache")


@pytest.fixture(scope="module")
def sonify_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny procedural library (8 clips per class, 1 s) with one unreadable clip, per module."""
    from factories.sonify import write_library

    return write_library(tmp_path_factory.mktemp("lib"), per_class=8, seconds=1.0, bad=1)


@pytest.fixture(scope="module")
def sonify_prep(sonify_library: Path, sonify_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """PREP of ``sonify_library`` with the weight-free ``toyband`` doubles (layer 1, 1 s clips,
    batches of 5: the last batch is partial)."""
    import factories.sonify  # noqa: F401 - registers the toyband extractor and codec

    from auralens.sonify.prepare import prepare

    out = tmp_path_factory.mktemp("prep")
    prepare(sonify_library, "toyband", "toyband", 1, out, duration=1.0, batch_size=5, cache_dir=sonify_cache)
    return out

