"""``separate eval`` and ``evaluate fad|kad|spectral`` remove, when they start, the temporary
files that a killed writer left in their output folder (named as
:func:`auralens.io.atomic_path` names them, stale by :func:`auralens.io._stale`), and keep
those of a writer still running. They write only at the top level of the folder, so its
subfolders (the whole tree below a broad ``--out`` such as ``.``) are not searched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from factories.audio_files import fuss_folder, tone_folder

from auralens import io
from auralens.cli import main

NMF = "nmf@n_iter=5"
AGE = 3600.0  # seconds: past min_age, short of max_age


def _dead_pid() -> int:
    """The pid of a process that has exited."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not io._pid_alive(proc.pid)
    return proc.pid


def _temp(folder: Path, stem: str, pid: int, age: float) -> Path:
    """A temporary file as an interrupted write of ``folder/<stem>.json`` by ``pid`` leaves it,
    last modified ``age`` seconds ago."""
    path = folder / f".{stem}.{pid}.ab_cd123.tmp.json"
    assert io.is_temp_name(path.name)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text('{"partial": ')
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def _leftovers(out: Path) -> tuple[Path, Path, Path]:
    """A killed writer's leftover (stale), a live writer's fresh file and a live writer's old
    one (both kept)."""
    stale = _temp(out, "metrics", _dead_pid(), AGE)
    fresh = _temp(out, "run", os.getpid(), 0.0)
    live = _temp(out, "summary", os.getpid(), AGE)
    assert io._stale(AGE, str(_pid(stale)), 60.0, 86400.0)
    assert not io._stale(0.0, str(os.getpid()), 60.0, 86400.0)
    assert not io._stale(AGE, str(os.getpid()), 60.0, 86400.0)
    return stale, fresh, live


def _stale_below(out: Path) -> Path:
    """A killed writer's leftover in a subfolder of ``out`` (not the command's to remove)."""
    return _temp(out / "sub" / "deeper", "scores", _dead_pid(), AGE)


def _pid(path: Path) -> int:
    return int(path.name.split(".")[2])


@pytest.mark.parametrize("metric", ["fad", "kad", "spectral"])
def test_evaluate_removes_a_killed_writers_temp_files(tmp_path, capsys, metric):
    ref = tone_folder(tmp_path, "ref", [220, 330, 440, 550], 0.01)
    out = tmp_path / "out"
    stale, fresh, live = _leftovers(out)
    below = _stale_below(out)
    inputs = [str(ref), str(ref)] if metric != "spectral" else [str(ref / "tone220.wav")] * 2
    assert main(["evaluate", metric, *inputs, "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file()
    assert not stale.exists()
    assert fresh.exists() and live.exists() and below.exists()


def test_separate_eval_removes_a_killed_writers_temp_files(tmp_path, capsys):
    data = fuss_folder(tmp_path / "data", 2)
    out = tmp_path / "E"
    stale, fresh, live = _leftovers(out)
    below = _stale_below(out)
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--no-bss"]) == 0
    assert (out / "summary.json").is_file()
    assert not stale.exists()
    assert fresh.exists() and live.exists() and below.exists()


def test_remove_stale_temps_searches_below_the_folder_unless_told_not_to(tmp_path):
    stale, fresh, live = _leftovers(tmp_path)
    below = _stale_below(tmp_path)
    assert io.remove_stale_temps(tmp_path, recursive=False) == [stale]
    assert fresh.exists() and live.exists() and below.exists()
    assert io.remove_stale_temps(tmp_path) == [below]  # the default searches every subfolder
    assert fresh.exists() and live.exists()
