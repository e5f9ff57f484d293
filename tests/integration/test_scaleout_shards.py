"""``--shard i/n`` + merge reproduces the unsharded run: sonify prepare and imagine batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from auralens.io import read_json, read_jsonl


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """11 procedural 1 s clips (one per class), one of them unreadable."""
    from auralens.data.synth import synthesize

    root = tmp_path_factory.mktemp("shard-lib")
    synthesize(root / "lib", clips_per_class=1, seed=7, sample_rate=16000, duration=1.0)
    wavs = sorted((root / "lib" / "audio").glob("*.wav"))
    wavs[4].write_bytes(b"not audio")  # a failure that must land in the merged errors.jsonl
    return root / "lib"


def test_sharded_prepare_then_merge_equals_unsharded(library: Path, tiny_model, tmp_path: Path) -> None:
    from auralens.cli import app
    from auralens.sonify.prepare import load_prepared, prepare

    encoder = f"hubert:{tiny_model('hubert')}"
    ref = tmp_path / "ref"
    prepare(library, encoder, "mel", 1, ref, duration=1.0, batch_size=4, cache_dir=tmp_path / "cache-ref")

    prep, runner = tmp_path / "prep", CliRunner()
    env = {"AURALENS_CACHE": str(tmp_path / "cache-shared"), "AURALENS_NO_PROGRESS": "1"}
    base = ["sonify", "prepare", str(library), "--encoder", encoder, "--layer", "1", "--codec", "mel",
            "--duration", "1", "--batch-size", "4", "--out", str(prep)]
    res = runner.invoke(app, [*base, "--shard", "1/2"], env=env)
    assert res.exit_code == 0, res.output
    # Merging before every shard ran is refused with a clear message.
    res = runner.invoke(app, [*base, "--merge"], env=env)
    assert res.exit_code == 1 and "0/2 not run yet" in str(res.exception), res.output
    res = runner.invoke(app, [*base, "--shard", "0/2"], env=env)
    assert res.exit_code == 0, res.output
    assert not (prep / "index.jsonl").exists()
    # Options that contradict the shards would be ignored: refused, like other DATA or --shard.
    for extra in (["--duration", "2"], ["--seed", "7"], ["--shard", "0/2"]):
        res = runner.invoke(app, [*base, *extra, "--merge"], env=env)
        assert res.exit_code == 1 and "--merge" in str(res.exception), (extra, res.output)
    other = [str(tmp_path) if a == str(library) else a for a in base]
    res = runner.invoke(app, [*other, "--merge"], env=env)
    assert res.exit_code == 1 and "were prepared from" in str(res.exception), res.output
    assert not (prep / "index.jsonl").exists()
    res = runner.invoke(app, [*base, "--merge"], env=env)  # the shards' own command, repeated
    assert res.exit_code == 0, res.output

    assert read_jsonl(prep / "index.jsonl") == read_jsonl(ref / "index.jsonl")
    assert len(read_jsonl(prep / "index.jsonl")) == 10
    for name in ("train.txt", "val.txt", "test.txt"):
        assert (prep / name).read_text() == (ref / name).read_text(), name
    assert [e["item"] for e in read_jsonl(prep / "errors.jsonl")] == \
        [e["item"] for e in read_jsonl(ref / "errors.jsonl")]
    got, want = read_json(prep / "run.json")["prepared"], read_json(ref / "run.json")["prepared"]
    for key in ("n_clips", "n_ok", "n_failed", "splits", "emb_shape", "lat_shape", "duration", "dtype"):
        assert got[key] == want[key], key
    # Each clip was computed exactly once, by one shard, into the shared cache.
    assert got["computed"] == want["computed"] == {"embeddings": 10, "latents": 10}
    a, b = load_prepared(prep), load_prepared(ref)
    for split in a.emb:
        assert a.ids[split] == b.ids[split]
        # Shards batch different clips together: the encoder's batched kernels round differently.
        np.testing.assert_allclose(a.emb[split], b.emb[split], rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(a.lat[split], b.lat[split])


def test_imagine_batch_shards_merge_to_the_unsharded_results(tmp_path: Path, tiny_model) -> None:
    from auralens.cli import app
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize
    from auralens.scene.pipeline import imagine_batch
    from auralens.types import SceneRecord, save_records
    from tests.integration.test_imagine import LookupSeparator, _cfg

    lib = synthesize(tmp_path / "lib", clips_per_class=1, seed=2, duration=1.0, sample_rate=16000)
    recs = build_mixtures(lib, tmp_path / "fuss", n=4, seed=2, duration=1.5, min_sources=1,
                          max_sources=2, reverb=False)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"nope")
    manifest = tmp_path / "m.jsonl"
    save_records(manifest, [*recs, SceneRecord("broken", broken, [])])
    sep = LookupSeparator(recs)

    ref = imagine_batch(manifest, tmp_path / "ref", _cfg(sep, tiny_model))
    out = tmp_path / "sharded"
    for i in (1, 0):
        imagine_batch(manifest, out, _cfg(sep, tiny_model), shard=f"{i}/2")
    parts = sorted((out / "shards").iterdir())
    assert [p.name for p in parts] == ["part-0-of-2", "part-1-of-2"]
    assert sum(len(read_jsonl(p / "results.jsonl")) for p in parts) == 4
    assert sum(len(read_jsonl(p / "errors.jsonl")) for p in parts) == 1
    res = CliRunner().invoke(app, ["data", "merge", *map(str, parts), "--out", str(out / "results.jsonl")])
    assert res.exit_code == 0, res.output

    def comparable(lines: list[dict]) -> list[dict]:
        return sorted(({k: v for k, v in ln.items() if k not in ("timings", "paths")} for ln in lines),
                      key=lambda r: r["id"])

    merged = read_jsonl(out / "results.jsonl")
    assert comparable(merged) == comparable(ref) and len(merged) == 4
    assert all((out / "items" / r["id"] / "description.txt").is_file() for r in merged)
    # Resume: a shard rerun finds its items done and redoes nothing.
    again = imagine_batch(manifest, out, _cfg(sep, tiny_model), shard="0/2")
    assert read_json(parts[0] / "run.json")["n_new"] == 0 and len(again) == len(read_jsonl(parts[0] / "results.jsonl"))



def test_separate_batch_shards_of_different_settings_are_not_merged(tmp_path: Path, capsys) -> None:
    """Shards run with another activity rule used to merge into one file with two fingerprints."""
    from auralens.cli import main
    from auralens.data.mix import build_mixtures
    from auralens.data.synth import synthesize

    lib = synthesize(tmp_path / "lib", clips_per_class=1, seed=2, duration=1.0, sample_rate=16000,
                     classes=["siren", "rain", "engine"])
    build_mixtures(lib, tmp_path / "mm", n=4, seed=2, duration=1.0, max_sources=2, reverb=False)
    out, other = tmp_path / "sb", tmp_path / "sb-frames"
    assert main(["separate", "batch", str(tmp_path / "mm"), "--out", str(out), "--shard", "0/2"]) == 0
    # into the same --out another rule is refused (its items would be written over) …
    capsys.readouterr()
    assert main(["separate", "batch", str(tmp_path / "mm"), "--out", str(out), "--shard", "1/2",
                 "--rule", "frames"]) == 1
    assert "part-0-of-2/results.jsonl" in capsys.readouterr().err
    # … and shards made apart with other settings do not merge
    assert main(["separate", "batch", str(tmp_path / "mm"), "--out", str(other), "--shard", "1/2",
                 "--rule", "frames"]) == 0
    parts = [str(out / "shards" / "part-0-of-2"), str(other / "shards" / "part-1-of-2")]
    capsys.readouterr()
    assert main(["data", "merge", *parts, "--out", str(out / "results.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert "part-0-of-2/results.jsonl:1 and" in err and "part-1-of-2/results.jsonl:1" in err
    assert "different settings (activity differs)" in err
    assert not (out / "results.jsonl").exists()
    # the same settings in every shard merge as before
    out2 = tmp_path / "sb2"
    for i in (0, 1):
        assert main(["separate", "batch", str(tmp_path / "mm"), "--out", str(out2), "--shard", f"{i}/2"]) == 0
    assert main(["data", "merge", *map(str, sorted((out2 / "shards").iterdir())),
                 "--out", str(out2 / "results.jsonl")]) == 0
    merged = read_jsonl(out2 / "results.jsonl")
    assert len(merged) == 4 and len({r["fingerprint"] for r in merged}) == 1


def test_merge_from_another_directory_with_another_spelling_of_data(library: Path, tiny_model,
                                                                    tmp_path: Path, monkeypatch) -> None:
    from auralens.cli import app

    runner = CliRunner()
    env = {"AURALENS_CACHE": str(tmp_path / "cache"), "AURALENS_NO_PROGRESS": "1"}
    monkeypatch.chdir(library.parent)
    rel = ["sonify", "prepare", library.name, "--encoder", f"hubert:{tiny_model('hubert')}", "--codec",
           "mel", "--layer", "1", "--duration", "1", "--out", "prep-rel"]
    for part in ("0/2", "1/2"):
        res = runner.invoke(app, [*rel, "--shard", part], env=env)
        assert res.exit_code == 0, res.output
    recorded = read_json(library.parent / "prep-rel" / "shards" / "part-0-of-2" / "run.json")["config"]["data"]
    assert recorded == str(library.resolve())  # absolute: comparable from anywhere
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["sonify", "prepare", str(library), "--out", str(library.parent / "prep-rel"),
                              "--merge"], env=env)
    assert res.exit_code == 0, res.output
    assert (library.parent / "prep-rel" / "index.jsonl").is_file()
