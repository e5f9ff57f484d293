"""Sonify refuses to mix results made with different settings, and checks options up front.

Covers: shard merges with other settings, resume with changed settings, lr grids and
sweeps over finished runs of another config, one split per renders/ folder, renders of an
older checkpoint, AST patch-grid trimming with ``duration=None``, the extractor's input
window, the compute dtype in cache keys, options checked before a run folder exists,
header-only clip lengths on cached ``duration=None`` reruns, encoder specs spelled relative vs
absolute, renders of older versions, and layer spellings naming the same block.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from factories.sonify import ToyCodec, ToyExtractor, write_library

from auralens.errors import CheckpointMismatchError
from auralens.evaluate.sonify_eval import load_run as load_eval_run
from auralens.io import read_json, read_jsonl
from auralens.sonify.prepare import (
    PrepareError,
    embedding_key,
    latent_key,
    load_prepared,
    merge_prepared,
    prepare,
)
from auralens.sonify.render import RenderError, load_run, read_window, render, render_split
from auralens.sonify.sweep import sweep
from auralens.sonify.train import TrainConfig, TrainError, parse_lrs, train, train_grid

ENC, COD = "toyband", "toyband"
MEL = "mel@n_mels=32,n_iter=4"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("consistency-cache")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("lib"), per_class=8, seconds=1.0)


@pytest.fixture(scope="module")
def prep(library: Path, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("prep")
    prepare(library, ENC, COD, 1, out, duration=1.0, cache_dir=cache)
    return out


def _cfg(**kw) -> TrainConfig:
    base = dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False)
    return TrainConfig(**(base | kw))


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# --- 1. prepare --merge --------------------------------------------------------------------

@pytest.mark.parametrize(("second", "key"), [
    ({"layer": 2}, "extractor.layer"),
    ({"seed": 7}, "seed"),
    ({"limit": 11}, "limit"),
])
def test_merge_refuses_shards_made_with_other_settings(library: Path, cache: Path, tmp_path: Path,
                                                       second: dict, key: str) -> None:
    out = tmp_path / "prep"
    common = dict(duration=1.0, cache_dir=cache, limit=12)
    prepare(library, ENC, COD, 1, out, shard="0/2", **common)
    opts = {"layer": 1} | second
    prepare(library, ENC, COD, opts.pop("layer"), out, shard="1/2", **(common | opts))
    with pytest.raises(PrepareError, match=rf"part-1-of-2: {key} .* differs from part-0-of-2's") as exc:
        merge_prepared(out)
    assert "\n" not in str(exc.value)
    assert not (out / "index.jsonl").exists()


def test_merge_of_matching_shards_still_works(library: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "prep"
    for i in range(2):
        prepare(library, ENC, COD, 1, out, shard=f"{i}/2", duration=1.0, cache_dir=cache, limit=12)
    assert merge_prepared(out).n_ok == 12


# --- 2. train --resume ---------------------------------------------------------------------

def test_resume_refuses_changed_model_or_loss_settings(prep: Path, tmp_path: Path) -> None:
    from auralens.cli import main

    run = tmp_path / "run"
    train(prep, run, _cfg())
    before = _md5(run / "last.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"normalize 'none' → 'minmax'"):
        train(prep, run, _cfg(epochs=2, normalize="minmax"), resume=True)
    with pytest.raises(CheckpointMismatchError) as exc:
        train(prep, run, _cfg(epochs=2, resample="dense", hidden=32, batch_size=8), resume=True)
    msg = str(exc.value)
    assert "resample 'interp' → 'dense'" in msg and "hidden 256 → 32" in msg and "batch_size 4 → 8" in msg
    assert "\n" not in msg and "lr" not in msg.split("(")[1].split(")")[0]
    assert _md5(run / "last.safetensors") == before and len(read_jsonl(run / "history.jsonl")) == 1
    # lr, epochs and the alias of the same gate may change.
    res = train(prep, run, _cfg(gate="v0", epochs=2, lr=5e-3), resume=True)
    assert res.epochs_run == 2
    rc = main(["sonify", "train", str(prep), "--out", str(run), "--epochs", "3", "--batch-size", "4",
               "--resume", "--blur", "--lr", "1e-2"])
    assert rc == 1 and len(read_jsonl(run / "history.jsonl")) == 2


# --- 3. lr grids and sweeps over finished runs --------------------------------------------

def test_lr_grid_refuses_finished_runs_of_another_config(prep: Path, tmp_path: Path) -> None:
    grid = tmp_path / "grid"
    train_grid(prep, grid, _cfg(), [1e-2, 5e-3])
    stamp = _md5(grid / "lr=0.01" / "best.safetensors")
    with pytest.raises(TrainError, match=r"lr=0.01: holds a run made with other settings \(gate 'v0' → 'v1'; "
                                         r"normalize 'none' → 'minmax'\); choose another --out or pass --overwrite"):
        train_grid(prep, grid, _cfg(gate="conv", normalize="minmax"), [1e-2, 5e-3], resume=True)
    assert _md5(grid / "lr=0.01" / "best.safetensors") == stamp  # nothing was trained
    # The same config is still skipped as finished.
    again = train_grid(prep, grid, _cfg(), [1e-2, 5e-3], resume=True)
    assert _md5(grid / "lr=0.01" / "best.safetensors") == stamp and [r.status for r in again] == ["ok", "ok"]
    res = train_grid(prep, grid, _cfg(gate="conv"), [1e-2, 5e-3], overwrite=True)
    assert [r.status for r in res] == ["ok", "ok"]
    assert read_json(grid / "lr=0.005" / "run.json")["config"]["gate"] == "v1"


def test_sweep_refuses_finished_runs_of_another_config(library: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    kw = dict(duration=1.0, render_limit=1, cache_dir=cache)
    sweep(library, ENC, "1", COD, "lin", out, cfg=_cfg(), **kw)
    stamp = _md5(out / "layer=1" / "run" / "best.safetensors")
    with pytest.raises(TrainError, match=r"layer=1/run: holds a run made with other settings "
                                         r"\(gate 'v0' → 'v1'; lr 0.01 → 0.5\).*--overwrite"):
        sweep(library, ENC, "1", COD, "conv", out, cfg=_cfg(lr=0.5), **kw)
    assert _md5(out / "layer=1" / "run" / "best.safetensors") == stamp
    rows = sweep(library, ENC, "1", COD, "conv", out, cfg=_cfg(lr=0.05), overwrite=True, **kw)
    conf = read_json(out / "layer=1" / "run" / "run.json")["config"]
    assert rows[0]["status"] == "ok" and (conf["gate"], conf["lr"]) == ("v1", 0.05)
    renders = read_json(out / "layer=1" / "run" / "renders" / "run.json")
    assert renders["counts"]["rendered"] == 1  # rendered again with the new gate
    # --overwrite prepares again too: another split seed is not refused by the prepared data
    rows = sweep(library, ENC, "1", COD, "conv", out, cfg=_cfg(lr=0.05), overwrite=True,
                 seed=7, **kw)
    assert rows[0]["status"] == "ok"
    assert read_json(out / "layer=1" / "prep" / "run.json")["config"]["seed"] == 7


# --- 4./5. renders: one split per folder, re-rendered after retraining ----------------------

def test_render_refuses_another_split_and_report_scores_one(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg())
    out = render_split(run, "test", ["minmax"], limit=1)
    test_ids = [r["id"] for r in read_jsonl(prep / "index.jsonl") if r["split"] == "test"][:1]
    val_ids = [r["id"] for r in read_jsonl(prep / "index.jsonl") if r["split"] == "val"]
    assert read_json(out / "run.json")["config"]["clips"] == test_ids
    with pytest.raises(RenderError, match=r"holds renders of the test split; pass --overwrite") as exc:
        render_split(run, "val", ["minmax"])
    assert "\n" not in str(exc.value)
    assert sorted(p.stem for p in (out / "original").glob("*.wav")) == test_ids
    render_split(run, "val", ["minmax"], overwrite=True)
    manifest = read_json(out / "run.json")["config"]
    assert manifest["split"] == "val" and sorted(manifest["clips"]) == sorted(val_ids)
    assert sorted(p.stem for p in (out / "minmax").glob("*.wav")) == sorted(val_ids)
    # The report reads only the listed clips, even if a stray file lies in the folder.
    sf.write(str(out / "original" / "stray.wav"), np.zeros(800, np.float32), 8000)
    assert load_eval_run(run).clips == sorted(val_ids)


def test_renders_of_an_older_checkpoint_are_made_again(prep: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(prep, run, _cfg())
    out = render_split(run, "test", ["none"], limit=2)
    first = read_json(out / "run.json")
    files = sorted((out / "none").glob("*.wav"))
    old = [_md5(p) for p in files]
    assert len(first["config"]["checkpoint_sha256"]) == 64 and first["counts"]["rendered"] == 2
    render_split(run, "test", ["none"], limit=2)
    assert read_json(out / "run.json")["counts"]["skipped"] == 2  # same checkpoint: resumed
    train(prep, run, _cfg(lr=0.2, epochs=2), overwrite=True)
    render_split(run, "test", ["none"], limit=1)
    again = read_json(out / "run.json")
    assert again["counts"] == {"clips": 1, "rendered": 1, "skipped": 0, "failed": 0}
    assert again["config"]["checkpoint_sha256"] != first["config"]["checkpoint_sha256"]
    assert _md5(files[0]) != old[0]
    assert not files[1].exists() and again["config"]["clips"] == [files[0].stem]  # stale render removed


# --- 6./7. AST patch grids and the input window --------------------------------------------

def test_duration_none_trims_the_ast_grid_like_render(tiny_model, library: Path, tmp_path: Path) -> None:
    ast = f"ast:{tiny_model('ast')}"
    prep = tmp_path / "prep"
    prepare(library, ast, MEL, "patch", prep, duration=None, cache_dir=tmp_path / "c")
    index = read_jsonl(prep / "index.jsonl")
    # 1 s clips: 10 of the 12 time patches of the 1.28 s window hold audio.
    assert {r["valid_time_patches"] for r in index} == {10}
    data = load_prepared(prep)
    assert data.emb["train"].shape[1:] == (32, 50)  # 10 time patches × 5 frequency patches
    run = tmp_path / "run"
    train(data, run, _cfg(gate="lin"))
    loaded = load_run(run)
    seen: list[tuple[int, ...]] = []
    loaded.model.register_forward_pre_hook(lambda m, a: seen.append(tuple(a[0].shape)))
    wave, sr = sf.read(data.records["test"][0]["path"], dtype="float32")
    render(loaded, wave, sr)
    assert seen == [(1, 32, 50)]


def test_extractor_window_is_enforced(tiny_model, library: Path, tmp_path: Path,
                                      caplog: pytest.LogCaptureFixture) -> None:
    ast = f"ast:{tiny_model('ast')}"
    with pytest.raises(PrepareError, match=r"--duration 2 s is longer than the input window of .* \(1.28 s\)"):
        prepare(library, ast, MEL, "patch", tmp_path / "p2", duration=2.0, cache_dir=tmp_path / "c")
    assert not (tmp_path / "p2").exists()
    # Clips keeping their length: a clip longer than the window is skipped into errors.jsonl.
    lib = write_library(tmp_path / "lib", per_class=2, seconds=1.0)
    long_clip = next((lib / "audio").glob("*.wav"))
    sf.write(str(long_clip), 0.1 * np.ones(32000, np.float32), 16000)
    prep = tmp_path / "p0"
    res = prepare(lib, ast, MEL, "patch", prep, duration=None, cache_dir=tmp_path / "c")
    errors = read_jsonl(prep / "errors.jsonl")
    assert res.n_ok == 5 and [e["item"] for e in errors] == [long_clip.stem]
    assert "2.00 s is longer than the input window" in errors[0]["error"]
    # Single-file render cuts to the window and says so.
    run = tmp_path / "run"
    train(prep, run, _cfg())
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        out = render(load_run(run), 0.1 * np.ones(32000, np.float32), 16000)
    assert out.shape == (round(1.28 * 22050),)
    assert "rendering only the first 1.28 s" in caplog.text
    # From a file, only the window is decoded; the warning names the whole file's length.
    caplog.clear()
    ramp = np.linspace(-0.5, 0.5, 16000 * 9, dtype=np.float32)
    sf.write(str(tmp_path / "long.wav"), ramp, 16000, subtype="FLOAT")
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        wave, sr = read_window(load_run(run).extractor, tmp_path / "long.wav")
    assert sr == 16000 and np.array_equal(wave, ramp[:20480])
    assert "clip is 9.00 s" in caplog.text and "rendering only the first 1.28 s" in caplog.text


# --- 8. compute dtype in the cache key -----------------------------------------------------

def test_cache_keys_include_the_compute_dtype() -> None:
    import torch

    ext, cod = ToyExtractor(), ToyCodec()
    k_plain = embedding_key("abc", ext, "float32", 1.0)
    ext.torch_dtype = torch.float32
    assert embedding_key("abc", ext, "float32", 1.0) == k_plain  # float32 keeps earlier keys
    ext.torch_dtype = torch.bfloat16
    assert embedding_key("abc", ext, "float32", 1.0) != k_plain
    l_plain = latent_key("abc", cod, "float32", 1.0)
    cod.torch_dtype = torch.float16
    assert latent_key("abc", cod, "float32", 1.0) != l_plain


def test_prepare_in_another_compute_dtype_recomputes(tiny_model, library: Path, tmp_path: Path) -> None:
    ast = f"ast:{tiny_model('ast')}"
    kw = dict(duration=1.0, cache_dir=tmp_path / "c", limit=3)
    prepare(library, ast, MEL, "patch", tmp_path / "f32", **kw)
    res = prepare(library, f"{ast}@dtype=bfloat16", MEL, "patch", tmp_path / "bf16", **kw)
    assert (res.computed_embeddings, res.computed_latents) == (3, 0)
    info = read_json(tmp_path / "bf16" / "run.json")["prepared"]
    assert info["extractor"]["compute_dtype"] == "bfloat16"


# --- 9./10./11. options checked up front ---------------------------------------------------

@pytest.mark.parametrize(("opts", "match"), [
    (["--resample", "foo"], r"--resample: unknown frame mapping 'foo'"),
    (["--device", "foo"], r"--device: unknown device 'foo'"),
    (["--device", "cuda"], r"--device cuda: CUDA is not available"),
])
def test_bad_train_options_fail_before_the_run_folder_exists(prep: Path, tmp_path: Path, opts: list[str],
                                                             match: str, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture) -> None:
    import torch

    from auralens.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    assert main(["sonify", "train", str(prep), "--out", str(out), "--epochs", "1", *opts]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    import re

    assert re.search(match, err), err
    assert not out.exists()


def test_sweep_checks_every_layer_before_running(library: Path, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    with pytest.raises(PrepareError, match=r"--layers: bad layer\(s\) 9 \(layer 9 is out of range"):
        sweep(library, ENC, "1,9", COD, "lin", out, cfg=_cfg(), duration=1.0, cache_dir=cache)
    assert not (out / "layer=1").exists()


def test_duplicate_learning_rates_train_once(prep: Path, tmp_path: Path) -> None:
    assert parse_lrs("1e-3,0.001,5e-4,0.0005") == [1e-3, 5e-4]
    res = train_grid(prep, tmp_path / "grid", _cfg(), [1e-2, 0.01, 2e-2])
    assert [r.lr for r in res] == [0.01, 0.02]
    assert sorted(p.name for p in (tmp_path / "grid").glob("lr=*")) == ["lr=0.01", "lr=0.02"]


# --- 9. duration=None reruns read clip lengths from the headers -------------------------------

def test_resampled_length_matches_resample() -> None:
    from auralens.audio import resample
    from auralens.sonify.prepare import resampled_length

    for n, a, b in [(1, 32000, 16000), (5, 32000, 16000), (80, 16000, 44100), (16537, 22050, 16000),
                    (24000, 48000, 16000), (12345, 44100, 24000), (777, 16000, 16000)]:
        assert resampled_length(n, a, b) == resample(np.zeros(n, np.float32), a, b).shape[0], (n, a, b)


def test_duration_none_rerun_decodes_only_clips_with_missing_arrays(
        tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import auralens.sonify.prepare as prep_mod

    ast = f"ast:{tiny_model('ast')}"
    # 22.05 kHz clips of different lengths: the patch counts depend on the 16 kHz length.
    lib = write_library(tmp_path / "lib", per_class=2, seconds=1.0, sr=22050)
    clips = sorted((lib / "audio").glob("*.wav"))
    for clip, seconds in zip(clips, (0.31, 0.55, 0.77, 0.93, 1.2), strict=False):
        sf.write(str(clip), 0.1 * np.sin(np.arange(int(seconds * 22050)) / 7.0).astype(np.float32), 22050)
    long_clip = clips[-1]
    sf.write(str(long_clip), 0.1 * np.ones(int(2.0 * 22050), np.float32), 22050)  # > the 1.28 s window
    decoded: list[str] = []
    real_load = prep_mod.load_clip_wave

    def counting(path: Path, duration: float | None):
        decoded.append(Path(path).stem)
        return real_load(path, duration)

    monkeypatch.setattr(prep_mod, "load_clip_wave", counting)
    kw = dict(duration=None, cache_dir=tmp_path / "c")
    prepare(lib, ast, MEL, "patch", tmp_path / "p1", **kw)
    first = read_jsonl(tmp_path / "p1" / "index.jsonl")
    assert len(decoded) == 6 and len({r["valid_time_patches"] for r in first}) >= 4
    decoded.clear()
    prepare(lib, ast, MEL, "patch", tmp_path / "p2", **kw)
    # Only the clip that is refused (so never cached) is decoded again; the rest come from headers.
    assert decoded == [long_clip.stem]
    assert read_jsonl(tmp_path / "p2" / "index.jsonl") == first
    errors = read_jsonl(tmp_path / "p2" / "errors.jsonl")
    assert [e["item"] for e in errors] == [long_clip.stem] and "2.00 s is longer" in errors[0]["error"]
    # A header that cannot tell the length: the clip is decoded, with the same result.
    decoded.clear()
    monkeypatch.setattr(prep_mod, "header_length", lambda path: None)
    prepare(lib, ast, MEL, "patch", tmp_path / "p3", **kw)
    assert sorted(decoded) == sorted(c.stem for c in clips)
    assert read_jsonl(tmp_path / "p3" / "index.jsonl") == first


# --- 10. specs naming the same local directory; data checked before prepare rewrites ---------

def test_normalise_spec_resolves_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens.sonify.train import normalise_spec

    (tmp_path / "models" / "enc").mkdir(parents=True)
    (tmp_path / "models" / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    absolute = f"classifier:{tmp_path / 'models' / 'enc'}"
    assert normalise_spec("classifier:models/enc") == normalise_spec(absolute)
    assert normalise_spec("classifier:./models/../models/enc") == normalise_spec(absolute)
    assert normalise_spec("models/enc@layer=2") == normalise_spec(f"{tmp_path / 'models' / 'enc'}@layer=2")
    assert normalise_spec("mel@n_mels=32,n_iter=4") == normalise_spec("mel@n_iter=4,n_mels=32")
    assert normalise_spec("classifier:models/other") != normalise_spec(absolute)
    assert normalise_spec("hf:MIT/ast-x") == "hf:MIT/ast-x"  # not a local path: as given
    assert normalise_spec("mel@n_mels=32") != normalise_spec("mel@n_mels=64")


def test_sweep_accepts_another_spelling_of_the_encoder_dir_and_refuses_before_preparing(
        library: Path, cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models" / "enc").mkdir(parents=True)
    (tmp_path / "models" / "other").mkdir()
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sweep"
    kw = dict(cfg=_cfg(), duration=1.0, render_limit=1, cache_dir=cache)
    sweep(library, f"{ENC}:{tmp_path / 'models' / 'enc'}", "1,2", COD, "lin", out, **kw)
    stamps = {x: _md5(out / f"layer={x}" / "run" / "best.safetensors") for x in (1, 2)}
    rows = sweep(library, f"{ENC}:models/enc", "1,2", COD, "lin", out, **kw)  # relative spelling
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert {x: _md5(out / f"layer={x}" / "run" / "best.safetensors") for x in (1, 2)} == stamps  # not retrained
    preps = {x: _md5(out / f"layer={x}" / "prep" / "run.json") for x in (1, 2)}
    with pytest.raises(TrainError, match=r"layer=1/run: holds a run made with other settings \(encoder .*models/other"):
        sweep(library, f"{ENC}:models/other", "1,2", COD, "lin", out, **kw)
    with pytest.raises(TrainError, match=r"layer=1/run: holds a run made with other settings \(duration 1.0 → 0.5\)"):
        sweep(library, f"{ENC}:models/enc", "1,2", COD, "lin", out, **(kw | {"duration": 0.5}))
    # Refused before any prep folder was written again.
    assert {x: _md5(out / f"layer={x}" / "prep" / "run.json") for x in (1, 2)} == preps


# --- 11. renders of an older version (no checkpoint SHA-256 recorded) -----------------------

def _as_older_version(renders: Path, mtime_ns: int) -> None:
    """Rewrite renders/run.json the way the version before checkpoint identities wrote it."""
    import json
    import os

    manifest = read_json(renders / "run.json")
    for key in ("checkpoint_sha256", "checkpoint_epoch", "clips"):
        manifest["config"].pop(key)
    (renders / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    os.utime(renders / "run.json", ns=(mtime_ns, mtime_ns))


def test_renders_without_a_recorded_checkpoint_are_kept_unless_the_checkpoint_is_newer(
        prep: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import os

    run = tmp_path / "run"
    train(prep, run, _cfg())
    out = render_split(run, "test", ["none"], limit=2)
    files = sorted((out / "none").glob("*.wav"))
    stamps = [_md5(p) for p in files]
    ckpt_file = Path(read_json(out / "run.json")["config"]["checkpoint"])
    ckpt_mtime = ckpt_file.stat().st_mtime_ns
    _as_older_version(out, ckpt_mtime + 10**9)  # rendered after the checkpoint was written
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        render_split(run, "test", ["none"], limit=2)
    again = read_json(out / "run.json")
    assert again["counts"] == {"clips": 2, "rendered": 0, "skipped": 2, "failed": 0}
    assert [_md5(p) for p in files] == stamps and "rendering again" not in caplog.text
    assert len(again["config"]["checkpoint_sha256"]) == 64  # identity recorded from now on
    # The checkpoint was written after such renders: made again, saying why.
    _as_older_version(out, ckpt_mtime - 10**9)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.render"):
        render_split(run, "test", ["none"], limit=2)
    assert read_json(out / "run.json")["counts"]["rendered"] == 2
    assert "was written after these renders" in caplog.text and "trained again" not in caplog.text
    assert os.path.exists(files[0])


# --- 12. layer spellings naming the same block train it once ---------------------------------

def test_sweep_trains_a_layer_named_twice_once(library: Path, cache: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from auralens.sonify.sweep import check_layers, unique_layers

    resolved = check_layers(ENC, ["last", 3, "features", -1, 2])
    assert resolved == [3, 3, "features", 3, 2]  # the toy extractor has blocks 1..3
    with caplog.at_level(logging.WARNING, logger="auralens.sonify.sweep"):
        kept = unique_layers(["last", 3, "features", -1, 2], resolved)
    assert kept == [("last", 3), ("features", "features"), (2, 2)]
    # the dropped spellings are said at the default log level, not only with -v
    assert "layer -1 names the same layer as last (3); trained once" in caplog.text
    out = tmp_path / "sweep"
    rows = sweep(library, ENC, "3,last,-1", COD, "lin", out, cfg=_cfg(), duration=1.0, render_limit=1,
                 cache_dir=cache)
    assert [r["layer"] for r in rows] == ["3"]
    assert sorted(p.name for p in out.glob("layer=*")) == ["layer=3"]
    assert read_json(out / "run.json")["config"]["layers"] == ["3"]
    # The first spelling names the folder; the prepared data records the resolved block.
    rows = sweep(library, ENC, "last,3", COD, "lin", tmp_path / "sweep2", cfg=_cfg(), duration=1.0,
                 render_limit=1, cache_dir=cache)
    assert [r["layer"] for r in rows] == ["last"]
    assert read_json(tmp_path / "sweep2" / "layer=last" / "prep" / "run.json")["prepared"]["extractor"]["layer"] == 3
    # A rerun with the other spelling order resumes instead of refusing or retraining.
    stamp = _md5(tmp_path / "sweep2" / "layer=last" / "run" / "best.safetensors")
    rows = sweep(library, ENC, "last,3", COD, "lin", tmp_path / "sweep2", cfg=_cfg(), duration=1.0,
                 render_limit=1, cache_dir=cache)
    assert rows[0]["status"] == "ok"
    assert _md5(tmp_path / "sweep2" / "layer=last" / "run" / "best.safetensors") == stamp


# --- 13. --resume help lists what may change ---------------------------------------------

def test_resume_help_names_every_option_that_may_change() -> None:
    import typer.main

    from auralens.sonify.cli import app
    from auralens.sonify.train import RESUME_MAY_CHANGE

    command = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    text = next(p for p in command.params if p.name == "resume").help
    python_only = {"tensorboard"}  # TrainConfig.tensorboard has no command-line flag
    assert python_only <= set(RESUME_MAY_CHANGE)
    flags = {p.name for p in command.params}
    for key in RESUME_MAY_CHANGE:
        if key in python_only:
            assert key not in flags and "TensorBoard" not in text, key
        else:
            assert "--" + key.replace("_", "-") in text, key
    assert "--batch-size" not in text.replace("--eval-batch-size", "")
