"""What ``separate`` writes and reads back: an earlier run's sources are replaced and nothing
else is (a user's files, the input), another command's output folder is refused, batch inputs
never include output folders, ``average`` takes one run's checkpoints once each, a checkpoint
matches however it is spelled, and ``separate eval`` refuses options its input does not use."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from factories.audio_files import fuss_folder, noise_wav

from auralens.cli import main
from auralens.io import read_json, read_jsonl, write_run_json

SR = 16000
NMF = "nmf@n_iter=5"


_wav = noise_wav


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


_fuss = fuss_folder


# ----------------------------------------------------------------------------- 1: user files


def test_separate_into_a_user_folder_keeps_its_files_and_the_input(tmp_path, capsys):
    user = tmp_path / "userdir"
    mix = _wav(user / "sources" / "source_recording_final.wav", 0)
    other = _wav(user / "sources" / "sourceA.wav", 1)
    (user / "sources" / "source1.txt").write_text("notes")
    before = _files(user)
    assert main(["separate", str(mix), "--out", str(user), "-s", NMF]) == 0
    after = _files(user)
    for name, data in before.items():  # every file the user had is still there, unchanged
        assert after[name] == data, name
    assert mix.is_file() and other.is_file()
    n = read_json(user / "summary.json")["n_estimates"]
    assert sorted(p.name for p in (user / "sources").glob("source[0-9]*.wav")) == [
        f"source{k}.wav" for k in range(n)]
    # a rerun replaces its own sources and still leaves the user's files alone
    assert main(["separate", str(mix), "--out", str(user), "-s", NMF]) == 0
    assert mix.read_bytes() == before["sources/source_recording_final.wav"]
    assert other.read_bytes() == before["sources/sourceA.wav"]


def test_separate_never_overwrites_source_files_no_separate_run_wrote(tmp_path, capsys):
    mix = _wav(tmp_path / "mix.wav", 0)
    user = tmp_path / "mine"
    own = _wav(user / "sources" / "source0.wav", 5)
    before = own.read_bytes()
    assert main(["separate", str(mix), "--out", str(user), "-s", NMF]) == 1
    err = _err(capsys)
    assert str(own) in err and "use another --out" in err
    assert own.read_bytes() == before and sorted(p.name for p in user.rglob("*")) == ["source0.wav", "sources"]


def test_separating_an_earlier_runs_source_into_its_folder_is_refused(tmp_path, capsys):
    mix = _wav(tmp_path / "mix.wav", 0)
    out = tmp_path / "out"
    assert main(["separate", str(mix), "--out", str(out), "-s", NMF]) == 0
    src = out / "sources" / "source0.wav"
    before = src.read_bytes()
    assert main(["separate", str(src), "--out", str(out), "-s", NMF]) == 1
    err = _err(capsys)
    assert str(src) in err and "the input is one of the sources this run writes" in err
    assert src.read_bytes() == before


# ----------------------------------------------------------------------------- 2: other runs


@pytest.mark.parametrize("command, files", [
    ("imagine --mode full", ("captions.json", "description.txt", "report.html")),
    ("separate eval", ("scores.jsonl", "summary.json")),
    ("separate train", ("best.safetensors", "history.jsonl")),
    ("separate batch", ("results.jsonl",)),
])
def test_separate_into_another_commands_folder_is_refused(tmp_path, capsys, command, files):
    mix = _wav(tmp_path / "mix.wav", 0)
    out = tmp_path / "run"
    out.mkdir()
    for name in files:
        (out / name).write_text("earlier")
    write_run_json(out, command=command, config={})
    before = _files(out)
    assert main(["separate", str(mix), "--out", str(out), "-s", NMF]) == 1
    assert _err(capsys) == (f"error: {out}: holds the outputs of 'auralens {command}' (run.json); "
                            "use another --out for 'auralens separate'")
    assert _files(out) == before


def test_separate_into_a_folder_with_a_foreign_run_json_is_refused(tmp_path, capsys):
    mix = _wav(tmp_path / "mix.wav", 0)
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{"mine": 1}')
    assert main(["separate", str(mix), "--out", str(out), "-s", NMF]) == 1
    assert "run.json was not written by auralens" in _err(capsys)
    assert (out / "run.json").read_text() == '{"mine": 1}'


def test_a_rerun_with_fewer_estimates_leaves_none_of_the_earlier_ones(tmp_path):
    mix = _wav(tmp_path / "mix.wav", 0)
    out = tmp_path / "out"
    assert main(["separate", str(mix), "--out", str(out), "-s", "nmf@n_iter=5,num_sources=4"]) == 0
    assert len(list((out / "sources").iterdir())) == 4
    assert main(["separate", str(mix), "--out", str(out), "-s", "nmf@n_iter=5,num_sources=2"]) == 0
    assert sorted(p.name for p in (out / "sources").iterdir()) == ["source0.wav", "source1.wav"]
    assert [Path(f).name for f in read_json(out / "summary.json")["sources"]] == ["source0.wav", "source1.wav"]


def test_a_batch_replaces_the_sources_a_killed_run_left_in_its_item_folder(tmp_path):
    data = tmp_path / "data"
    _wav(data / "a.wav", 0)
    out = tmp_path / "out"
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", "nmf@n_iter=5,num_sources=4"]) == 0
    # as a kill between the sources and the records leaves it: no run.json, no result line
    (out / "items" / "a" / "run.json").unlink()
    (out / "results.jsonl").unlink()
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", "nmf@n_iter=5,num_sources=2"]) == 0
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["a"]
    assert sorted(p.name for p in (out / "items" / "a" / "sources").iterdir()) == ["source0.wav", "source1.wav"]


# ----------------------------------------------------------------------------- 3: batch inputs


@pytest.mark.parametrize("command", ["separate", "imagine"])
def test_batch_out_inside_the_input_folder_is_refused(tmp_path, capsys, command):
    data = tmp_path / "recordings"
    _wav(data / "a.wav", 0)
    sep = ["-s", NMF] if command == "separate" else ["--separator", NMF]
    out = data / "out"
    assert main([command, "batch", str(data), "--out", str(out), *sep]) == 1
    assert _err(capsys) == (f"error: {data}: --out {out.resolve()} is inside the input folder; "
                            "use an --out outside the input folder")
    assert not out.exists()


def test_batch_skips_output_folders_below_the_input(tmp_path, capsys):
    data = tmp_path / "recordings"
    _wav(data / "a.wav", 0)
    _wav(data / "sub" / "b.wav", 1)
    first = tmp_path / "first"
    assert main(["separate", "batch", str(data), "--out", str(first), "-s", NMF]) == 0
    # earlier outputs moved in beside the recordings: a batch, a single run, an imagine run
    shutil.copytree(first, data / "old_batch")
    assert main(["separate", str(data / "a.wav"), "--out", str(data / "single"), "-s", NMF]) == 0
    _wav(data / "img" / "input.wav", 2)
    write_run_json(data / "img", command="imagine --mode full", config={})
    shard = data / "sharded"
    _wav(shard / "items" / "x" / "sources" / "source0.wav", 3)
    write_run_json(shard / "shards" / "part-0-of-2", command="separate batch", config={})
    _wav(data / "synth" / "clip.wav", 4)  # a dataset auralens made is read as usual
    write_run_json(data / "synth", command="data synth", config={})
    out = tmp_path / "second"
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", NMF]) == 0
    assert sorted(r["id"] for r in read_jsonl(out / "results.jsonl")) == ["a", "sub/b", "synth/clip"]
    # an output folder itself is not a folder of mixtures
    capsys.readouterr()
    assert main(["separate", "batch", str(first), "--out", str(tmp_path / "third"), "-s", NMF]) == 1
    assert _err(capsys) == (f"error: {first}: holds the outputs of 'auralens separate batch' "
                            "(run.json), not mixtures to process; give the folder of the inputs")


# ----------------------------------------------------------------------------- 4: average


def _save(path: Path, seed: int, step: int, header_run: bool = True) -> Path:
    from factories.separate import micro_config

    from auralens.checkpoint_io import read_checkpoint, write_checkpoint
    from auralens.errors import CheckpointMismatchError
    from auralens.scene.separate.tdcnpp import TDCNpp, save_checkpoint

    torch.manual_seed(seed)
    saved = save_checkpoint(path, TDCNpp(micro_config()), {"step": step})
    if not header_run:  # as written before checkpoints recorded their run
        header, state = read_checkpoint(saved, "TDCN++", CheckpointMismatchError)
        header.pop("run", None)
        write_checkpoint(saved, state, header)
    return saved


def test_average_takes_each_checkpoint_of_one_run_once(tmp_path, capsys):
    from auralens.scene.separate.tdcnpp import load_checkpoint, read_header

    run = tmp_path / "run"
    kept = [_save(run / "keep" / f"step{s}.safetensors", s, s) for s in (1, 2)]
    best = _save(run / "best.safetensors", 3, 2)
    # the same file twice, however spelled, would count twice
    for twice in ([kept[0], kept[1], kept[0]], [run / "keep" / "step1.safetensors",
                                                run / "keep" / ".." / "keep" / "step1.safetensors"]):
        assert main(["separate", "average", *map(str, twice), "--out", str(tmp_path / "d.safetensors")]) == 1
        err = _err(capsys)
        assert f"{kept[0]}: given twice" in err or "step1.safetensors: given twice" in err, err
        assert not (tmp_path / "d.safetensors").exists()
    # the output is a safetensors file
    assert main(["separate", "average", *map(str, kept), "--out", str(tmp_path / "x.txt")]) == 1
    assert "name a .safetensors file" in _err(capsys)
    assert not (tmp_path / "x.txt").exists()
    # checkpoints of one run, each once: averaged
    avg = tmp_path / "avg.safetensors"
    assert main(["separate", "average", *map(str, kept), str(best), "--out", str(avg)]) == 0
    assert [s["step"] for s in load_checkpoint(avg)[1]["averaged_from"]] == [1, 2, 2]
    assert read_header(best)["run"] == read_header(kept[0])["run"] == str(run)


def test_average_refuses_checkpoints_of_different_runs(tmp_path, capsys):
    a = _save(tmp_path / "runA" / "keep" / "step1.safetensors", 0, 1)
    b = _save(tmp_path / "runB" / "keep" / "step1.safetensors", 1, 1)
    out = tmp_path / "avg.safetensors"
    assert main(["separate", "average", str(a), str(b), "--out", str(out)]) == 1
    err = _err(capsys)
    assert f"{b}: from the training run in {tmp_path / 'runB'}" in err and "runA" in err
    assert not out.exists()
    # checkpoints whose headers name no run: the seeds their training folders record differ
    old_a = _save(tmp_path / "oldA" / "best.safetensors", 0, 1, header_run=False)
    old_b = _save(tmp_path / "oldB" / "best.safetensors", 1, 1, header_run=False)
    write_run_json(old_a.parent, command="separate train", config={}, seed=0)
    write_run_json(old_b.parent, command="separate train", config={}, seed=7)
    assert main(["separate", "average", str(old_a), str(old_b), "--out", str(out)]) == 1
    assert _err(capsys) == (f"error: {old_b}: trained with seed 7, {old_a} with seed 0; only "
                            "checkpoints of one training run can be averaged")
    assert not out.exists()


# ----------------------------------------------------------------------------- 5: specs


def test_the_default_checkpoint_spelled_as_a_path_matches_tdcnpp(tmp_path, capsys):
    from factories.separate import make_tdcnpp

    from auralens.scene.separate.base import SEPARATORS
    from auralens.scene.separate.tdcnpp import DEFAULT_CHECKPOINT
    from auralens.specs import canonical_spec

    for spelling in (f"tdcnpp:{DEFAULT_CHECKPOINT}", str(DEFAULT_CHECKPOINT),
                     f"tdcnpp:{DEFAULT_CHECKPOINT.parent}", None):
        assert canonical_spec(spelling, SEPARATORS) == "tdcnpp", spelling
    assert canonical_spec(f"tdcnpp:{DEFAULT_CHECKPOINT}@chunk=5", SEPARATORS) == "tdcnpp@chunk=5"
    data = tmp_path / "data"
    _wav(data / "a.wav", 0, seconds=0.3)
    out = tmp_path / "out"
    assert main(["separate", "batch", str(data), "--out", str(out)]) == 0
    _wav(data / "b.wav", 1, seconds=0.3)
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", f"tdcnpp:{DEFAULT_CHECKPOINT}"]) == 0
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", str(DEFAULT_CHECKPOINT)]) == 0
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["a", "b"]
    # another checkpoint is still other settings
    capsys.readouterr()
    other = make_tdcnpp(tmp_path / "other")
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", f"tdcnpp:{other}"]) == 1
    assert "holds results made with other settings" in _err(capsys)


# ----------------------------------------------------------------------------- 6: eval options


def _esc(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text("filename,fold,target,category,esc10,src_file,take\n")
    return root


@pytest.mark.parametrize("args, named", [
    (["--n", "3"], "--n applies"),
    (["--folds", "1,2"], "--folds applies"),
    (["--seconds", "2"], "--seconds applies"),
    (["--n", "3", "--seconds", "2"], "--n, --seconds apply"),
])
def test_eval_of_fuss_data_refuses_esc50_options(tmp_path, capsys, args, named):
    data = _fuss(tmp_path / "fuss", 1)
    out = tmp_path / "E"
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--no-bss", *args]) == 1
    err = _err(capsys)
    assert err.startswith(f"error: {data}: {named} to an ESC-50 folder only"), err
    assert not out.exists()


def test_eval_of_an_esc50_folder_refuses_split_and_overlong_mixtures(tmp_path, capsys):
    from auralens.data import MAX_DURATION_S

    data = _esc(tmp_path / "esc")
    out = tmp_path / "E"
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--split", "train"]) == 1
    assert _err(capsys) == (f"error: {data}: --split applies to FUSS data only; an ESC-50 folder "
                            "has no splits (its mixtures are built from --folds)")
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--seconds", "700"]) == 1
    assert _err(capsys) == (f"error: {data}: --seconds 700 must be above 0 and at most "
                            f"{MAX_DURATION_S:g} (the longest mixture data mix makes)")
    assert not out.exists()


def test_eval_of_fuss_data_without_esc50_options_still_runs(tmp_path):
    data = _fuss(tmp_path / "fuss", 2)
    out = tmp_path / "E"
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--no-bss",
                 "--split", "train", "--limit", "1"]) == 0
    config = read_json(out / "run.json")["config"]
    assert (config["split"], config["n"], config["seconds"], config["folds"]) == ("train", None, None, None)


def test_interrupted_eval_rerun_leaves_no_mix_of_two_runs(tmp_path, monkeypatch):
    from auralens.scene.separate import metrics
    from auralens.scene.separate.run import evaluate_separator

    data = _fuss(tmp_path / "fuss", 2)
    out = tmp_path / "E"
    evaluate_separator(data, out, separator=NMF, bss=False)
    assert read_json(out / "summary.json")["separator"].startswith("nmf")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as if stopped while the final files are written

    monkeypatch.setattr(metrics, "plot_summary", killed)
    with pytest.raises(KeyboardInterrupt):
        evaluate_separator(data, out, bss=False)  # the default separator: another run
    record = read_json(out / "run.json")
    assert record.get("status") == "running", record  # not a finished run's record
    assert record["models"]["separator"]["name"].startswith("tdcnpp"), record["models"]
    # none of the earlier run's results is left beside the new run's partial ones
    assert not (out / "summary.json").exists() and not (out / "summary.png").exists()
    assert (out / "scores.jsonl").exists() and (out / "by_count.csv").exists()

    monkeypatch.undo()
    evaluate_separator(data, out, bss=False)
    assert read_json(out / "run.json")["status"] == "ok"
    assert read_json(out / "summary.json")["separator"].startswith("tdcnpp")


@pytest.mark.parametrize(("files", "message"), [
    ({"notes.txt": "my notes"}, "holds files that separate eval does not write"),
    ({"run.json": '{"command": "sonify train", "versions": {"auralens": "0"}}'},
     "holds the output of 'sonify train'"),
])
def test_eval_refuses_a_folder_it_did_not_write(tmp_path, files, message):
    from auralens.scene.separate.run import SeparationError, evaluate_separator

    other = tmp_path / "other"
    other.mkdir()
    for name, text in {"summary.json": '{"mine": 1}', **files}.items():
        (other / name).write_text(text)
    with pytest.raises(SeparationError, match=message):
        evaluate_separator(tmp_path / "nothing", other, "nmf")
    assert (other / "summary.json").read_text() == '{"mine": 1}'  # an eval result's name, kept
