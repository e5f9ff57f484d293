"""Batch jobs over datasets with corrupt files: the rest completes, the bad ones are listed.

Corrupt kinds: random bytes, a header cut short, an empty file, and a float WAV holding NaN.
Documented behaviour (docs/robustness.md): the command exits 0, prints its normal summary,
logs ``N of M items failed; see …/errors.jsonl`` on stderr, and ``errors.jsonl`` holds one
record per bad item naming its file. Only a run where *every* item fails is an error (exit 1).
"""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.io import read_jsonl

CLI = [sys.executable, "-m", "auralens.cli"]
KINDS = ("random", "truncated", "empty", "nan")


def cli_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(AURALENS_CACHE=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               AURALENS_NO_PROGRESS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    return env


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)


def corrupt(path: Path, kind: str, good: Path, rng: np.random.Generator) -> None:
    """Overwrite ``path`` with one kind of damage (``good`` is a valid WAV to cut short)."""
    if kind == "random":
        path.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(good.read_bytes()[:30])  # the RIFF header cut mid-way
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "nan":
        wave = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        wave[100:200] = np.nan
        sf.write(path, wave, 16000, subtype="FLOAT")
    else:
        raise ValueError(kind)


@pytest.fixture(scope="module")
def corrupt_library(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """77 good 1 s clips + 4 corrupt ones (4.9 %) in ESC-50 layout."""
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("corrupt-lib") / "lib"
    synthesize(root, clips_per_class=7, seed=5, sample_rate=16000, duration=1.0)
    meta = root / "meta" / "esc50.csv"
    rows = list(csv.reader(meta.open()))
    header, first = rows[0], rows[1]
    good = root / "audio" / first[0]
    rng = np.random.default_rng(0)
    bad = []
    for k, kind in enumerate(KINDS):
        name = f"1-{900000 + k}-A-{first[2]}.wav"
        corrupt(root / "audio" / name, kind, good, rng)
        rows.append([name, "1", first[2], first[3], "False", str(900000 + k), "A"])
        bad.append(Path(name).stem)
    with meta.open("w", newline="") as fh:
        csv.writer(fh).writerows([header, *rows[1:]])
    return root, bad


def test_prepare_skips_corrupt_clips(corrupt_library, tiny_model, tmp_path: Path) -> None:
    root, bad = corrupt_library
    out = tmp_path / "prep"
    args = ["sonify", "prepare", str(root), "--encoder", f"hubert:{tiny_model('hubert')}",
            "--layer", "1", "--codec", "mel", "--duration", "1", "--batch-size", "16",
            "--out", str(out)]
    proc = run_cli(args, cli_env(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"prepared 77/81 clips .* 4 failed", proc.stdout), proc.stdout
    assert re.search(r"4 of 81 items failed; see .*errors\.jsonl", proc.stderr)
    errors = read_jsonl(out / "errors.jsonl")
    assert sorted(e["item"] for e in errors) == sorted(bad)
    for e in errors:
        assert e["path"].endswith(f"{e['item']}.wav") and Path(e["path"]).name in e["error"]
    by_item = {e["item"]: e["error"] for e in errors}
    assert "empty" in by_item[bad[2]] and "NaN" in by_item[bad[3]]
    index = read_jsonl(out / "index.jsonl")
    assert len(index) == 77 and not {r["id"] for r in index} & set(bad)
    info = json.loads((out / "run.json").read_text())["prepared"]
    assert (info["n_clips"], info["n_ok"], info["n_failed"]) == (81, 77, 4)

    # A second run (in-process, same cache) recomputes nothing, retries the bad clips and
    # lists them again, without duplicates.
    from auralens.sonify.prepare import prepare

    res = prepare(root, f"hubert:{tiny_model('hubert')}", "mel", 1, out, duration=1.0,
                  batch_size=16, cache_dir=tmp_path / "cache")
    assert (res.n_ok, res.n_failed, res.computed_embeddings, res.computed_latents) == (77, 4, 0, 0)
    assert sorted(e["item"] for e in read_jsonl(out / "errors.jsonl")) == sorted(bad)


def test_prepare_with_only_corrupt_clips_is_an_error(tmp_path: Path) -> None:
    from auralens.sonify.prepare import PrepareError

    audio = tmp_path / "data"
    audio.mkdir()
    rng = np.random.default_rng(1)
    for kind in KINDS[:3]:
        corrupt(audio / f"{kind}.wav", kind, audio / "random.wav", rng)
    with pytest.raises(PrepareError, match="no clip could be prepared"):
        _prepare_with_stub(audio, tmp_path)
    assert len(read_jsonl(tmp_path / "prep" / "errors.jsonl")) == 3


def _prepare_with_stub(data: Path, tmp_path: Path):
    """prepare() with a weight-free stand-in extractor (bad files fail before it is used)."""
    from auralens.codecs.base import CODECS
    from auralens.encoders.base import Extractor
    from auralens.sonify.prepare import prepare

    class Frames(Extractor):
        name, layer, sample_rate, frame_rate, dim = "frames", "features", 16000, 50.0, 4

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return np.zeros((len(wave) // 320 + 1, 4), np.float32)

    return prepare(data, Frames(), CODECS.build("mel"), None, tmp_path / "prep",
                   cache_dir=tmp_path / "cache")


@pytest.fixture(scope="module")
def corrupt_fuss(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """40 dry 1 s mixtures in FUSS layout, 4 of them (10 %) damaged after mixing."""
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("corrupt-fuss")
    lib = synthesize(root / "lib", clips_per_class=2, seed=2, sample_rate=16000, duration=1.0)
    recs = build_mixtures(lib, root / "fuss", n=40, seed=3, duration=1.0, sample_rate=16000,
                          max_sources=2, reverb=False)
    rng = np.random.default_rng(2)
    picks = [recs[i] for i in (3, 11, 22, 35)]
    good = Path(recs[0].mixture)
    good = good if good.is_absolute() else root / "fuss" / good
    bad = []
    for rec, kind in zip(picks, KINDS, strict=True):
        path = Path(rec.mixture)
        corrupt(path if path.is_absolute() else root / "fuss" / path, kind, good, rng)
        bad.append(rec.id)
    return root / "fuss", bad


def test_imagine_batch_skips_corrupt_mixtures(corrupt_fuss, tiny_model, tmp_path: Path) -> None:
    fuss, bad = corrupt_fuss
    out = tmp_path / "out"
    args = ["imagine", "batch", str(fuss), "--out", str(out), "--separator", "nmf",
            "--captioner", f"classifier:{tiny_model('ast_classifier')}", "--set", "report=false"]
    proc = run_cli(args, cli_env(tmp_path / "cache"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "36 of 40 items done (36 by this run, 0 earlier); 4 failed" in proc.stdout
    assert re.search(r"4 of 40 items failed; see .*errors\.jsonl", proc.stderr)
    errors = read_jsonl(out / "errors.jsonl")
    assert sorted(e["item"] for e in errors) == sorted(bad)
    for e in errors:
        assert Path(e["path"]).name in e["error"]  # one line naming the file and the problem
    lines = read_jsonl(out / "results.jsonl")
    assert len(lines) == 36 and not {r["id"] for r in lines} & set(bad)
    assert all(r["description"] for r in lines)
    run = json.loads((out / "run.json").read_text())
    assert (run["n_items"], run["n_failed"], run["n_done"]) == (40, 4, 36)

    # Resume (in-process): finished mixtures are skipped, the bad ones retried and listed again.
    from auralens.scene.pipeline import imagine_batch

    lines = imagine_batch(fuss, out, {"separator": "nmf", "report": False,
                                      "captioner": f"classifier:{tiny_model('ast_classifier')}"})
    assert len(lines) == 36 and len({r["id"] for r in lines}) == 36
    assert sorted(e["item"] for e in read_jsonl(out / "errors.jsonl")) == sorted(bad)
    assert json.loads((out / "run.json").read_text())["n_new"] == 0
