"""``auralens data synth | mix | split`` end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from auralens.cli import app, main
from auralens.data.fuss import load_fuss

runner = CliRunner()


def test_mix_on_esc10(esc10: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix"
    res = runner.invoke(app, ["data", "mix", str(esc10), "--out", str(out), "--n", "8", "--seed", "2",
                              "--folds", "1,2", "--duration", "4"])
    assert res.exit_code == 0, res.output
    assert "source-count histogram" in res.output and "2 sources:" in res.output
    run = json.loads((out / "run.json").read_text())
    assert run["command"] == "data mix" and run["seed"] == 2
    assert sum(run["source_count_histogram"].values()) == 8
    assert run["config"]["folds"] == [1, 2]
    recs = load_fuss(out)
    assert len(recs) == 8 and all(r.sample_rate == 16000 for r in recs)
    assert all(s.origin.split("-")[0] in {"1", "2"} for r in recs for s in r.sources)
    assert sf.info(str(recs[0].mixture)).frames == 4 * 16000


def test_synth_and_split_and_mix(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    res = runner.invoke(app, ["data", "synth", "--out", str(lib), "--clips-per-class", "2",
                              "--sample-rate", "8000", "--duration", "1", "--classes", "siren,rain,wind"])
    assert res.exit_code == 0, res.output
    assert len(list((lib / "audio").glob("*.wav"))) == 6 and (lib / "run.json").is_file()
    res = runner.invoke(app, ["data", "split", str(lib), "--out", str(tmp_path / "splits"),
                              "--ratios", "0.5,0.5,0"])
    assert res.exit_code == 0, res.output
    lines = {k: (tmp_path / "splits" / f"{k}.txt").read_text().split() for k in ("train", "val", "test")}
    assert [len(v) for v in lines.values()] == [3, 3, 0]
    res = runner.invoke(app, ["data", "mix", str(lib), "--out", str(tmp_path / "m"), "--n", "3",
                              "--no-reverb", "--max-sources", "2", "--sample-rate", "8000",
                              "--duration", "2", "--split", "eval"])
    assert res.exit_code == 0, res.output
    recs = load_fuss(tmp_path / "m", split="eval")
    assert len(recs) == 3 and all(1 <= r.n_sources <= 2 and not r.meta["reverb"] for r in recs)


def test_errors_are_one_line(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "auralens.cli", "data", "split", str(tmp_path / "missing"),
                           "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == f"error: {tmp_path / 'missing'}: dataset directory not found\n"


@pytest.mark.parametrize(("args", "message"), [
    (["data", "mix", "{tmp}/missing", "--out", "{tmp}/o", "--n", "2"],
     "{tmp}/missing: dataset directory not found"),
    (["data", "synth", "--out", "{tmp}/s", "--classes", "unicorn"],
     "unknown synth class(es) unicorn; choose from siren, chirping_birds, rain, engine, clock_tick, "
     "church_bells, wind, footsteps, water_drops, voice, crickets"),
    # the folder is empty, so each option must be refused before the dataset is read
    (["data", "mix", "{tmp}", "--out", "{tmp}/o", "--n", "2", "--folds", "a,b"],
     "--folds must be comma-separated integers like 1,2,3, got 'a,b'"),
    (["data", "split", "{tmp}", "--out", "{tmp}/o", "--ratios", "1,2"],
     "--ratios must be three numbers like 0.8,0.1,0.1, got '1,2'"),
], ids=["mix-missing", "synth-class", "mix-folds", "split-ratios"])
def test_data_errors_name_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], message: str) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    argv = [a.format(tmp=lib) for a in args]
    assert main(argv) == 1, argv
    captured = capsys.readouterr()
    assert captured.err == f"error: {message.format(tmp=lib)}\n"
    assert list(lib.iterdir()) == []


@pytest.mark.parametrize("args", [
    ["data", "synth", "--duration", "0"],
    ["data", "synth", "--duration", "-2"],
    ["data", "synth", "--sample-rate", "0"],
    ["data", "synth", "--sample-rate", "100"],
])
def test_synth_refuses_bad_rate_or_duration(tmp_path: Path, args: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s"
    assert main([*args, "--out", str(out), "--clips-per-class", "1", "--classes", "rain"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    assert ("duration" in err) if "--duration" in args else ("sample rate" in err)
    assert not out.exists()


def test_mix_refuses_unsupported_rate_before_writing(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    assert main(["data", "synth", "--out", str(lib), "--clips-per-class", "1", "--sample-rate", "8000",
                 "--duration", "1", "--classes", "siren,rain"]) == 0
    capsys.readouterr()
    out = tmp_path / "m"
    assert main(["data", "mix", str(lib), "--out", str(out), "--n", "2", "--sample-rate", "100"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "sample_rate" in err, err
    assert not out.exists()


def _skipped_line(output: str) -> str | None:
    return next((ln for ln in output.splitlines() if "clip(s) skipped" in ln), None)


def test_mix_reports_this_runs_distinct_skipped_clips(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    res = runner.invoke(app, ["data", "synth", "--out", str(lib), "--clips-per-class", "3",
                              "--sample-rate", "8000", "--duration", "1", "--classes", "siren,rain,wind"])
    assert res.exit_code == 0, res.output
    wavs = sorted((lib / "audio").glob("*.wav"))
    for p in wavs[::2]:  # 5 of 9 clips cannot be read
        p.write_bytes(b"RIFF\x00\x00not really audio" * 10)
    out = tmp_path / "m"
    log_path = out / "errors.jsonl"
    base = ["data", "mix", str(lib), "--out", str(out), "--no-reverb", "--max-sources", "2",
            "--sample-rate", "8000", "--duration", "1"]

    def run(n: int) -> tuple[str | None, int, list[str]]:
        before = log_path.read_text().splitlines() if log_path.exists() else []
        res = runner.invoke(app, [*base, "--n", str(n)])
        assert res.exit_code == 0, res.output
        new = log_path.read_text().splitlines()[len(before):] if log_path.exists() else []
        n_errors = json.loads((out / "run.json").read_text())["n_errors"]
        return _skipped_line(res.output), n_errors, [json.loads(x)["item"] for x in new]

    line, n_errors, items = run(6)
    assert items and n_errors == len(set(items))
    assert line is not None and line.startswith(f"{n_errors} clip(s) skipped")
    # the same job again: nothing is loaded, so nothing is skipped (the old lines stay in the log)
    n_lines = len(log_path.read_text().splitlines())
    line, n_errors, items = run(6)
    assert (line, n_errors, items) == (None, 0, [])
    assert len(log_path.read_text().splitlines()) == n_lines
    # extending it re-reads clips: only this run's distinct skipped clips are counted
    line, n_errors, items = run(10)
    assert n_errors == len(set(items)) <= 5
    assert (line is None) if not items else line.startswith(f"{n_errors} clip(s) skipped")


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    return err


def test_absurd_sizes_are_one_line_refusals_before_any_work(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """These used to end in an OOM kill or a MemoryError traceback."""
    out = tmp_path / "s"
    assert main(["data", "synth", "--out", str(out), "--clips-per-class", "100000000"]) == 1
    assert "from 1 to 1000" in _one_line_error(capsys)
    assert main(["data", "synth", "--out", str(out), "--clips-per-class", "1", "--duration", "100000"]) == 1
    assert "longer than the 600 s limit" in _one_line_error(capsys)
    assert not out.exists()
    lib = tmp_path / "lib"
    assert main(["data", "synth", "--out", str(lib), "--clips-per-class", "1", "--sample-rate", "8000",
                 "--duration", "1", "--classes", "siren,rain"]) == 0
    capsys.readouterr()
    m = tmp_path / "m"
    assert main(["data", "mix", str(lib), "--out", str(m), "--n", "1", "--duration", "100000", "--no-reverb"]) == 1
    assert "longer than the 600 s limit" in _one_line_error(capsys)
    # a billion 10 s mixtures (about 2 PB) fit on no test machine's disk
    assert main(["data", "mix", str(lib), "--out", str(m), "--n", "1000000000", "--no-reverb"]) == 1
    assert "is free on that disk" in _one_line_error(capsys)
    assert not m.exists()
    res = runner.invoke(app, ["data", "synth", "--help"])
    text = re.sub(r"[\s│]+", " ", res.output)  # rich wraps the help in a box
    assert "Seconds per clip: at most 600" in text and "Clips per class (at most 1000)" in text


def test_synth_into_an_existing_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    base = ["data", "synth", "--out", str(lib), "--clips-per-class", "2", "--sample-rate", "8000",
            "--duration", "0.5", "--classes", "siren,rain"]
    assert main(base) == 0
    csv_before = (lib / "meta" / "esc50.csv").read_text()
    # another seed used to add 4 wavs beside the old ones and list only the new ones in the csv
    assert main([*base, "--seed", "7"]) == 1
    assert "(seed 42 → 7)" in _one_line_error(capsys)
    assert len(list((lib / "audio").iterdir())) == 4 and (lib / "meta" / "esc50.csv").read_text() == csv_before
    assert main(base) == 0  # the same settings: nothing to do
    assert "4 clips of 2 classes written" in capsys.readouterr().out
    # a user's ESC-50 copy used to get its csv replaced
    esc = tmp_path / "esc"
    (esc / "meta").mkdir(parents=True)
    (esc / "meta" / "esc50.csv").write_text("filename,fold,target,category\n")
    assert main(["data", "synth", "--out", str(esc)]) == 1
    assert "does not write (meta/esc50.csv)" in _one_line_error(capsys)
    assert (esc / "meta" / "esc50.csv").read_text() == "filename,fold,target,category\n"
    assert not (esc / "audio").exists()
