"""The video experiment's offline variant from nothing but the repo: mixtures → pairs → run."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralens.cli import main
from auralens.experiments.runner import ExperimentError, load_experiment, run_experiment
from auralens.io import read_jsonl

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "experiments"


@pytest.fixture(scope="module")
def mixes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three dry 2 s mixtures of a small procedural library (what the YAML's recipe makes from ESC-10)."""
    root = tmp_path_factory.mktemp("video-pairs")
    assert main(["data", "synth", "--out", str(root / "lib"), "--clips-per-class", "2", "--sample-rate", "16000",
                 "--duration", "2", "--classes", "siren,rain,engine,clock_tick"]) == 0
    assert main(["data", "mix", str(root / "lib"), "--out", str(root / "mix"), "--n", "3", "--duration", "2",
                 "--no-reverb", "--max-sources", "3"]) == 0
    return root / "mix"


def test_missing_pairs_file_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the YAML's data/video_pairs.jsonl, relative to here: absent
    with pytest.raises(ExperimentError) as exc:
        run_experiment(load_experiment(CONFIGS / "video.yaml"), tmp_path / "out")
    msg = str(exc.value)
    assert msg.startswith("data/video_pairs.jsonl: pairs manifest not found (data.path); it is a JSONL of")
    assert "auralens experiment video-pairs data/video_pairs.jsonl --from-mixer" in msg and "\n" not in msg
    assert "video-pairs" in (CONFIGS / "video.yaml").read_text()  # the YAML says so too


def test_video_pairs_from_the_mixer_run_the_offline_variant(mixes: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "video-pairs", "data/video_pairs.jsonl", "--from-mixer", str(mixes)]) == 0
    pairs = read_jsonl(tmp_path / "data" / "video_pairs.jsonl")
    manifest = read_jsonl(mixes / "manifest.jsonl")
    assert [p["id"] for p in pairs] == [r["id"] for r in manifest]
    for p, r in zip(pairs, manifest, strict=True):
        assert Path(p["audio"]).is_absolute() and Path(p["audio"]).is_file()
        assert p["n_sources"] == len(r["sources"]) == len(p["sources"])
        assert all(Path(s).is_file() for s in p["sources"]) and "image" not in p
        assert set(p["labels"]) == {s["label"] for s in r["sources"]}
    # the YAML as shipped (offline variant, data/video_pairs.jsonl) now runs
    summary = run_experiment(load_experiment(CONFIGS / "video.yaml"), tmp_path / "out")
    assert summary["errors"] == 0 and summary["rows"] == 3
    rows = read_jsonl(tmp_path / "out" / "results.jsonl")
    assert all(r["description"].strip() for r in rows)
    assert all(r["n_kept"] == p["n_sources"] for r, p in zip(sorted(rows, key=lambda r: r["id"]), pairs,
                                                               strict=True))


def test_video_pairs_with_reference_frames(mixes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    frames = tmp_path / "frames"
    frames.mkdir()
    ids = [r["id"].split("/")[-1] for r in read_jsonl(mixes / "manifest.jsonl")]
    for stem in ids[:-1]:
        Image.new("RGB", (8, 8)).save(frames / f"{stem}.png")
    out = tmp_path / "pairs.jsonl"
    assert main(["experiment", "video-pairs", str(out), "--from-mixer", str(mixes), "--frames", str(frames)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and f"no reference frame for train/{ids[-1]}" in err and not out.exists()
    Image.new("RGB", (8, 8)).save(frames / f"{ids[-1]}.jpg")
    assert main(["experiment", "video-pairs", str(out), "--from-mixer", str(mixes), "--frames", str(frames)]) == 0
    images = [Path(p["image"]) for p in read_jsonl(out)]
    assert [p.name for p in images] == [f"{s}.png" for s in ids[:-1]] + [f"{ids[-1]}.jpg"]
    assert main(["experiment", "video-pairs", str(out), "--from-mixer", str(tmp_path / "nothing")]) == 1
    assert "mixer manifest not found" in capsys.readouterr().err
