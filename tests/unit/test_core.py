"""Core: specs, registry, io, cache, types."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from auralens.cache import ArrayCache, hash_array, make_key
from auralens.config import ConfigError, apply_overrides
from auralens.io import ErrorLog, read_jsonl, write_json
from auralens.registry import Registry, RegistryError
from auralens.specs import (
    ModelSpec,
    SpecError,
    UnresolvedPathError,
    canonical_spec,
    parse_spec,
)
from auralens.types import Clip, SceneRecord, Source, load_scenes, save_records


def test_parse_hub_spec_with_params():
    s = parse_spec("hf:MIT/ast-finetuned-audioset-10-10-0.4593@layer=4")
    assert (s.kind, s.id, s.params) == ("hf", "MIT/ast-finetuned-audioset-10-10-0.4593", {"layer": 4})


def test_parse_bare_name_and_typed_params():
    s = parse_spec("mel@n_mels=128,power=1.5,log=true,layer=patch")
    assert s.kind == "mel" and s.id == ""
    assert s.params == {"n_mels": 128, "power": 1.5, "log": True, "layer": "patch"}


def test_parse_bare_hub_id_and_local_path(tmp_path):
    assert parse_spec("facebook/hubert-base-ls960").kind == "hf"
    d = tmp_path / "model@v1"
    d.mkdir()
    s = parse_spec(f"{d}@layer=features")
    assert s.kind == "path" and s.id == str(d) and s.params == {"layer": "features"}
    assert s.is_local


def test_parse_url_param_is_not_a_kind():
    s = parse_spec("openai:qwen@base_url=http://127.0.0.1:8000/v1")
    assert s.kind == "openai" and s.id == "qwen"
    assert s.params["base_url"] == "http://127.0.0.1:8000/v1"


@pytest.mark.parametrize("bad", ["", "  ", "mel@n_mels", "mel@1x=2"])
def test_bad_specs(bad):
    with pytest.raises(SpecError):
        parse_spec(bad)


def test_spec_values_that_are_not_plain_numbers_stay_text():
    params = parse_spec("hf:org/m@revision=0123,big=12e4567,x=nan,lr=1e-3,n=0,k=-2,f=0.5").params
    assert params == {"revision": "0123", "big": "12e4567", "x": "nan", "lr": 0.001, "n": 0,
                      "k": -2, "f": 0.5}
    assert apply_overrides({}, ["model.revision=007"]) == {"model": {"revision": "007"}}


def test_a_folder_named_like_a_backend_does_not_replace_it(tmp_path, monkeypatch):
    reg = Registry("thing")
    reg.register("mel", lambda spec, **p: ("backend", spec.kind, p))
    reg.register("hf", lambda spec, **p: ("hf", spec.id))
    (tmp_path / "mel").mkdir()
    monkeypatch.chdir(tmp_path)
    assert reg.build("mel@n=2") == ("backend", "mel", {"n": 2})
    assert reg.build("./mel") == ("hf", "./mel")  # an explicit path still names the folder


def test_registry_lazy_and_build():
    reg: Registry = Registry("thing", default="a")
    reg.register("a", "auralens.specs:ModelSpec")

    @reg.register("b")
    def make_b(spec, **params):
        return ("b", spec.id, params)

    assert reg.get("a") is ModelSpec
    assert "A" in reg and reg.names() == ["a", "b"]
    assert reg.build("b:x@k=1", extra=2) == ("b", "x", {"k": 1, "extra": 2})
    assert reg.build(None).kind.kind == "a"  # default backend, called as factory(spec)
    with pytest.raises(RegistryError, match="unknown thing backend 'zzz'"):
        reg.build("zzz")
    reg.register("broken", "auralens.nope:X")
    with pytest.raises(RegistryError, match="not installed"):
        reg.get("broken")


def test_cache_roundtrip_and_corrupt_entry(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    key = make_key(hash_array(a), backend="x", layer=3)
    assert key != make_key(hash_array(a), backend="x", layer=4)
    assert cache.get(key) is None
    cache.put(key, {"emb": a})
    np.testing.assert_array_equal(cache.get(key)["emb"], a)
    cache.path_for(key).write_bytes(b"garbage")
    assert cache.get(key) is None and key not in cache


def test_error_log_collects(tmp_path):
    log = ErrorLog(tmp_path / "errors.jsonl")
    with log.guard("item1", "a.wav"):
        raise ValueError("bad thing")
    with log.guard("item2"):
        pass
    assert len(log) == 1
    rec = read_jsonl(tmp_path / "errors.jsonl")
    assert rec == [{"item": "item1", "error": "bad thing", "type": "ValueError", "path": "a.wav"}]


def test_read_jsonl_skips_truncated_tail(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"a": 1}) + "\n" + '{"a": 2')
    assert read_jsonl(p) == [{"a": 1}]


def test_write_json_nan_to_null(tmp_path):
    write_json(tmp_path / "r.json", {"x": float("nan"), "y": np.float32(1.5)})
    assert json.loads((tmp_path / "r.json").read_text()) == {"x": None, "y": 1.5}


def test_scene_record_roundtrip(tmp_path):
    rec = SceneRecord("m1", tmp_path / "m.wav", [Source(tmp_path / "s.wav", "dog", "background")])
    save_records(tmp_path / "m.jsonl", [rec])
    back = load_scenes(tmp_path / "m.jsonl")[0]
    assert back.labels == ["dog"] and back.n_sources == 1 and back.sources[0].role == "background"
    assert Clip.from_dict(Clip("c", "x.wav", ["a"]).to_dict()).label == "a"


def test_load_scenes_names_the_line_that_is_not_a_scene_record(tmp_path):
    from auralens.data import DatasetError

    good = SceneRecord("m1", tmp_path / "m.wav", [Source(tmp_path / "s.wav", "dog")]).to_dict()
    bad_lines = [
        {"id": "x", "fingerprint": "abc", "paths": {"mixture": "m.wav"}},  # a results line
        {"id": "x", "mixture": "m.wav", "sources": [{"path": "s.wav"}]},  # a source w/o label
        {"id": "x", "mixture": "m.wav", "sources": ["s.wav"]},
        {"id": "x", "mixture": "m.wav", "sources": "s.wav"},
        {"id": None, "mixture": "m.wav"},
        {"id": "x", "mixture": None},
        ["not", "a", "mapping"],
    ]
    for bad in bad_lines:
        path = tmp_path / "r.jsonl"
        path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n")
        with pytest.raises(DatasetError) as info:
            load_scenes(path)
        msg = str(info.value)
        assert msg.startswith(f"{path} line 3: not a scene manifest record") and "\n" not in msg
    path.write_text(json.dumps(good) + "\n")
    assert [r.id for r in load_scenes(path)] == ["m1"]
    # a manifest is an input: a cut line is an error, not a shorter dataset, unless it is the
    # last one, still open, with no newline after it (a writer such as `data mix` is there)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:20] + "\n")
    with pytest.raises(DatasetError, match=r"r.jsonl:2: not a JSON line \(column \d+: "):
        load_scenes(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:20])
    assert [r.id for r in load_scenes(path)] == ["m1"]
    path.write_text('{"id": "a"\nnot json\n')
    with pytest.raises(DatasetError, match=r"r.jsonl:1: not a JSON line"):
        load_scenes(path)
    path.write_text("\n")
    assert load_scenes(path) == []


def test_separate_batch_on_a_results_file_is_one_line(tmp_path, capsys):
    from auralens.cli import main

    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps({"id": "a", "description": "x"}) + "\n")
    assert main(["separate", "batch", str(path), "--out", str(tmp_path / "o"),
                 "--separator", "nmf"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {path} line 1: not a scene manifest record (needs id, mixture and "
                   "sources with path and label)")


def test_canonical_spec_ignores_spelling_not_meaning(tmp_path, monkeypatch):
    reg = Registry("thing", default="mel")
    reg.register("mel", lambda spec, **p: None)
    reg.register("clf", lambda spec, **p: None)
    model = tmp_path / "models" / "clf-a"
    model.mkdir(parents=True)
    (tmp_path / "mel").mkdir()
    monkeypatch.chdir(tmp_path)
    # None / blank → the default backend; a same-named folder does not replace a backend
    assert canonical_spec(None, reg) == canonical_spec(" ", reg) == "mel"
    assert canonical_spec("mel", reg) == "mel"
    assert canonical_spec("mel@b=2,a=1", reg) == canonical_spec("mel@a=1,b=2", reg)
    # relative, ./-relative, ~-free absolute and symlinked spellings of one folder
    link = tmp_path / "link"
    link.symlink_to(model)
    spellings = ["clf:models/clf-a", "clf:./models/clf-a", f"clf:{model}", f"clf:{link}",
                 f"clf:{tmp_path}/models/../models/clf-a"]
    assert {canonical_spec(s, reg) for s in spellings} == {f"clf:{model.resolve()}"}
    assert canonical_spec("models/clf-a", reg) == str(model.resolve())  # a bare path
    # hub ids and names stay text; other options or another folder differ
    assert canonical_spec("clf:org/model", reg) == "clf:org/model"
    assert canonical_spec("clf:models/clf-a@x=1", reg) != canonical_spec("clf:models/clf-a", reg)
    # the same relative spelling from another working directory names another folder
    other = tmp_path / "elsewhere"
    (other / "models" / "clf-a").mkdir(parents=True)
    monkeypatch.chdir(other)
    assert canonical_spec("clf:models/clf-a", reg) == f"clf:{(other / 'models/clf-a').resolve()}"
    # an unknown working directory: relative local paths cannot be resolved
    with pytest.raises(UnresolvedPathError, match="models/clf-a"):
        canonical_spec("clf:models/clf-a", reg, resolve_relative=False)
    with pytest.raises(UnresolvedPathError):
        canonical_spec("./nowhere", reg, resolve_relative=False)
    assert canonical_spec(f"clf:{model}", reg, resolve_relative=False) == f"clf:{model.resolve()}"
    assert canonical_spec("clf:org/model", reg, resolve_relative=False) == "clf:org/model"
    assert canonical_spec(None, None) is None


def test_overrides():
    cfg = apply_overrides({"codec": {"backend": "mel"}}, ["codec.backend=dac", "train.lr=0.001"])
    assert cfg == {"codec": {"backend": "dac"}, "train": {"lr": 0.001}}
    with pytest.raises(ConfigError):
        apply_overrides({}, ["nokey"])


def test_overrides_take_yaml_lists_and_mappings():
    cfg = apply_overrides({}, ["train.count_weights=[1, 1, 2.5]", "m={a: 1}", "s=plain"])
    assert cfg == {"train": {"count_weights": [1, 1, 2.5]}, "m": {"a": 1}, "s": "plain"}
    with pytest.raises(ConfigError, match="not a YAML list"):
        apply_overrides({}, ["w=[1, 2"])


def test_checkpoint_container_round_trip_and_bad_files(tmp_path):
    import torch

    from auralens.checkpoint_io import read_checkpoint, read_header, write_checkpoint
    from auralens.errors import AuralensError

    class Bad(AuralensError):
        pass

    t = {"w": torch.arange(6.0).reshape(2, 3).t(), "b": torch.ones(2)}  # non-contiguous is fine
    path = write_checkpoint(tmp_path / "c.safetensors", t, {"format": "x/1", "step": 3})
    header, back = read_checkpoint(path, "test", Bad)
    assert header == {"format": "x/1", "step": 3} and read_header(path, "test", Bad) == header
    assert torch.equal(back["w"], t["w"]) and torch.equal(back["b"], t["b"])
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp file left
    with pytest.raises(Bad, match="test checkpoint not found"):
        read_header(tmp_path / "none.safetensors", "test", Bad)
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(Bad, match="unreadable test checkpoint"):
        read_checkpoint(tmp_path / "junk.safetensors", "test", Bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(Bad, match="no auralens header"):
        read_header(tmp_path / "plain.safetensors", "test", Bad)
    data = path.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 8])
    with pytest.raises(Bad):
        read_checkpoint(tmp_path / "cut.safetensors", "test", Bad)


def test_stale_temps_of_killed_writers_are_removed(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from auralens.io import atomic_path, remove_stale_temps

    # A writer killed inside atomic_path leaves its temporary file behind.
    code = ("import sys, time\nfrom auralens.io import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_bytes(b'partial')\n"
            "    print('ready', flush=True)\n    time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "sub" / "a.bin")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = list((tmp_path / "sub").iterdir())
    assert len(left) == 1 and left[0].name.startswith(".a.") and not (tmp_path / "sub" / "a.bin").exists()
    # too fresh: a writer on another machine could still own it
    assert remove_stale_temps(tmp_path) == []
    old = time.time() - 120
    os.utime(left[0], (old, old))
    # a live writer's file of the same age stays; other dot files stay
    with atomic_path(tmp_path / "b.txt") as live:
        live.write_text("x")
        os.utime(live, (old, old))
        (tmp_path / ".hidden.tmp").write_text("not ours")
        assert remove_stale_temps(tmp_path) == [left[0]]
        assert live.exists()
    assert (tmp_path / "b.txt").read_text() == "x" and (tmp_path / ".hidden.tmp").exists()
    assert remove_stale_temps(tmp_path / "missing") == []


def test_atomic_writes_get_the_mode_a_plain_write_gets(tmp_path):
    # mkstemp creates 0600 files; results must be as readable as any file the user writes.
    import os
    import subprocess
    import sys

    code = ("import os, sys\nos.umask(0o022)\nfrom auralens.io import write_json\n"
            "from auralens.cache import ArrayCache\nimport numpy as np\n"
            "write_json(sys.argv[1] + '/run.json', {'a': 1})\n"
            "ArrayCache(sys.argv[1], 'x').put('k' * 64, {'v': np.zeros(2)})\n"
            "open(sys.argv[1] + '/plain.txt', 'w').close()\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    plain = os.stat(tmp_path / "plain.txt").st_mode & 0o777
    assert plain == 0o644
    assert os.stat(tmp_path / "run.json").st_mode & 0o777 == plain
    entry = next((tmp_path / "x").rglob("*.safetensors"))
    assert os.stat(entry).st_mode & 0o777 == plain


def test_atomic_path_to_an_existing_directory_names_it_not_a_temp_file(tmp_path, capsys):
    """It used to fail on the rename with `.emp.<pid>.<random>.tmp: Is a directory`."""
    import errno

    from auralens.cli import main
    from auralens.io import atomic_path

    target = tmp_path / "emp"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as exc:
        with atomic_path(target):
            raise AssertionError("must not get a temporary file")
    assert exc.value.errno == errno.EISDIR and exc.value.filename == str(target)
    assert exc.value.strerror == "is a directory; expected a file path"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emp"] and not any(target.iterdir())
    # through the CLI: one line naming the user's path
    save_records(tmp_path / "mix" / "manifest.jsonl", [SceneRecord("a", tmp_path / "mix" / "a.wav", [])])
    capsys.readouterr()
    assert main(["experiment", "video-pairs", str(target), "--from-mixer", str(tmp_path / "mix")]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {target}: is a directory; expected a file path\n"


def test_no_progress_also_quiets_model_loading_bars() -> None:
    """AURALENS_NO_PROGRESS turns off transformers' and diffusers' loading bars too (fresh process)."""
    import subprocess
    import sys

    code = ("import auralens, transformers.utils.logging as tl, diffusers.utils.logging as dl; "
            "from auralens.progress import quiet_diffusers_if_asked; "
            "quiet_diffusers_if_asked(); "  # what the diffusers loaders call
            "print(tl.is_progress_bar_enabled(), dl.is_progress_bar_enabled())")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_DISABLE_PROGRESS_BARS"}
    outs = {}
    for flag in ("1", ""):
        run_env = {**env, "AURALENS_NO_PROGRESS": flag}
        outs[flag] = subprocess.run([sys.executable, "-c", code], env=run_env, capture_output=True,
                                    text=True, check=True).stdout.strip()
    assert outs == {"1": "False False", "": "True True"}


def test_check_fingerprints_refuses_other_settings_and_stamps_matching_old_rows() -> None:
    from auralens.config import check_fingerprints, fingerprint

    settings = {"a": 1}
    key = fingerprint(settings)

    class Refused(Exception):
        pass

    def refuse(what: str):
        raise Refused(what)

    def check(rows, legacy):
        return check_fingerprints(rows, key, settings, legacy_settings=lambda _: legacy,
                                  refuse=refuse, different=lambda old: f"with {old}")

    with pytest.raises(Refused, match="with {'a': 2}"):
        check([{"fingerprint": "x", "settings": {"a": 2}}], settings)
    with pytest.raises(Refused, match="without a settings fingerprint"):
        check([{"id": 1}], None)
    with pytest.raises(Refused, match="with {'a': 3}"):
        check([{"id": 1}], {"a": 3})
    rows = [{"id": 1}, {"id": 2, "fingerprint": key}]
    assert check(rows, {"a": 1}) == [rows[0]]
    assert rows[0] == {"id": 1, "fingerprint": key, "settings": settings}
    assert check(rows, None) == []  # nothing left to stamp: legacy_settings not needed
