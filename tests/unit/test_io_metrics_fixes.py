"""Damaged JSON records, silent estimates, duplicate ESC-50 rows, rating order, far-out samples,
model file modes and skip messages."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path

import numpy as np
import pytest

from auralens.audio import load_with_info, write
from auralens.errors import AuralensError

SR = 16000


# ----------------------------------------------------------------------------- damaged JSON


def test_read_json_names_the_file_and_stays_a_value_error(tmp_path: Path) -> None:
    from auralens.io import JSONFileError, read_json, read_recorded_settings

    bad = tmp_path / "run.json"
    bad.write_text("{")
    with pytest.raises(JSONFileError) as err:
        read_json(bad)
    assert isinstance(err.value, AuralensError) and isinstance(err.value, ValueError)
    assert str(err.value).startswith(f"{bad}: not valid JSON (line 1 column 2: ")
    assert "\n" not in str(err.value)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(JSONFileError, match=r"bin\.json: not UTF-8 text"):
        read_json(tmp_path / "bin.json")
    # callers that take an unreadable record as absent still do
    assert read_recorded_settings(tmp_path, "settings.json", "x", lambda msg: None) == (None, None)


def test_a_damaged_prepared_run_json_is_a_one_line_cli_error(tmp_path: Path, capsys) -> None:
    from auralens.cli import main

    prep = tmp_path / "PREP"
    prep.mkdir()
    (prep / "run.json").write_text("{\n")
    code = main(["sonify", "train", str(prep), "--out", str(tmp_path / "t"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith(f"error: {prep / 'run.json'}: not valid JSON (line 2 column 1: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


# ----------------------------------------------------------------------------- silent estimate


def test_a_silent_estimate_has_no_si_sdr_and_says_why() -> None:
    from auralens.evaluate.spectral import si_sdr, spectral_metrics, undefined_warning

    t = np.arange(SR) / SR
    ref = 0.3 * np.sin(2 * np.pi * 440 * t) * np.exp(-3 * t)
    noisy = ref + 0.3 * np.random.default_rng(0).standard_normal(SR)
    assert np.isfinite(si_sdr(ref, noisy))
    for est in (np.zeros(SR), np.full(SR, 0.2)):  # silent, and constant (silent but its mean)
        m = spectral_metrics(ref, est, SR)
        assert np.isnan(m["si_sdr"])  # not 0 dB, which would beat every real render
        assert {k for k, v in m.items() if not np.isfinite(v)} == {"si_sdr"}
        line = undefined_warning(ref, m, "reference a.wav")
        assert line is not None and line.startswith("the estimate is silent")
        assert line.endswith(": si_sdr undefined, given as null")
    m = spectral_metrics(ref, np.zeros(SR), SR)
    assert m["env_corr"] == 0.0  # follows none of the reference's loudness shape
    assert undefined_warning(ref, m, est=np.zeros(SR), est_name="estimate b.wav") == (
        "the estimate b.wav is silent (RMS at or below −100 dBFS): si_sdr undefined, given as null")
    m = spectral_metrics(ref, np.full(SR, 0.2), SR)
    assert undefined_warning(ref, m, est=np.full(SR, 0.2)).startswith("the estimate is constant")


def test_evaluate_spectral_gives_null_si_sdr_for_a_silent_file(tmp_path: Path, capsys) -> None:
    from auralens.cli import main

    t = np.arange(SR) / SR
    write(tmp_path / "ref.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), SR)
    write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    assert main(["evaluate", "spectral", str(tmp_path / "ref.wav"), str(tmp_path / "silent.wav")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["si_sdr"] is None and out["env_corr"] == 0.0
    assert any("si_sdr undefined" in w for w in out["warnings"])


# ----------------------------------------------------------------------------- ESC-50 split

HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def _esc(root: Path, rows: list[str], audio: bool = True) -> Path:
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(HEADER + "".join(r + "\n" for r in rows))
    (root / "audio").mkdir()
    if audio:
        for row in rows:
            name = row.split(",")[0]
            if not (root / "audio" / name).exists():
                write(root / "audio" / name, np.full(1600, 0.1, np.float32), SR)
    return root


def _rows(n: int = 10) -> list[str]:
    return [f"{1 + i % 2}-{i}-A-{i % 2}.wav,{1 + i % 2},{i % 2},{'dog' if i % 2 else 'cat'},True,{i},A"
            for i in range(n)]


@pytest.mark.parametrize("rows, audio, match", [
    ([], True, r"esc50\.csv: lists no clips \(only a header\)"),
    (_rows(3), False, r"esc50\.csv: none of the 3 listed audio files exists in .*audio"),
])
def test_split_of_an_esc50_layout_with_no_clip_is_an_error(tmp_path: Path, capsys, rows, audio,
                                                           match) -> None:
    from auralens.cli import main

    data = _esc(tmp_path / "d", rows, audio)
    assert main(["data", "split", str(data), "--out", str(tmp_path / "s")]) == 1
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert re.search(match, err), err
    assert not (tmp_path / "s" / "train.txt").exists()


def test_duplicate_csv_rows_never_reach_two_splits(tmp_path: Path, capsys,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    from auralens.cli import main
    from auralens.data.esc50 import load_esc50

    rows = _rows(20)
    data = _esc(tmp_path / "d", rows + rows[-3:])  # the same three rows again
    with caplog.at_level(logging.WARNING):
        clips = load_esc50(data)
    assert len(clips) == 20 and len({c.id for c in clips}) == 20
    assert f"lines 20 and 23 list {rows[18].split(',')[0]} identically" in caplog.text
    assert main(["data", "split", str(data), "--out", str(tmp_path / "s")]) == 0
    listed = [line for name in ("train", "val", "test")
              for line in (tmp_path / "s" / f"{name}.txt").read_text().splitlines()]
    assert sorted(listed) == sorted({r.split(",")[0] for r in rows})
    # rows that disagree about one file are refused, naming the csv, lines and file
    other = rows[4].replace(",cat,", ",dog,")
    data2 = _esc(tmp_path / "d2", [*rows, other])
    assert main(["data", "split", str(data2), "--out", str(tmp_path / "s2")]) == 1
    (err,) = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == (f"error: {data2 / 'meta' / 'esc50.csv'}: lines 6 and 22 list "
                   f"{rows[4].split(',')[0]} with different values; keep one row per clip")


# ----------------------------------------------------------------------------- ratings


def test_the_latest_rating_is_the_latest_by_its_timestamp(tmp_path: Path, capsys) -> None:
    from auralens.cli import main
    from auralens.evaluate.ratings import RatingError, aggregate_ratings, load_ratings

    head = "timestamp,rater,run,version,clip,visual,audio,comment\n"
    old, new = tmp_path / "old.csv", tmp_path / "new.csv"
    old.write_text(head + "2026-11-20T10:00:00,ann,r,r/raw,c1,1,1,\n")
    new.write_text(head + "2026-11-22T10:00:00,ann,r,r/raw,c1,5,5,\n")
    for order in ([new, old], [old, new]):
        (row,) = aggregate_ratings(load_ratings(order), by=("version",))
        assert row["n"] == 1 and row["visual_mean"] == 5 and row["audio_mean"] == 5
    assert main(["sonify", "ratings", str(new), str(old)]) == 0
    assert "| r/raw | 5.00 ± – | 5.00 ± – | 1 |" in capsys.readouterr().out
    # equal times: the later argument wins; an undated rating is older than a dated one
    same = tmp_path / "same.csv"
    same.write_text(head + "2026-11-22T10:00:00,ann,r,r/raw,c1,3,3,\n")
    assert aggregate_ratings(load_ratings([new, same]))[0]["visual_mean"] == 3
    assert aggregate_ratings(load_ratings([same, new]))[0]["visual_mean"] == 5
    undated = tmp_path / "undated.csv"
    undated.write_text(head + ",ann,r,r/raw,c1,2,2,\n")
    assert aggregate_ratings(load_ratings([old, undated]))[0]["visual_mean"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text(head + "yesterday,ann,r,r/raw,c1,2,2,\n")
    with pytest.raises(RatingError, match=r"bad\.csv:2: timestamp 'yesterday' is not a date"):
        load_ratings(bad)


# ----------------------------------------------------------------------------- small ones


def test_samples_far_outside_unit_range_are_a_warning(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import soundfile as sf

    path = tmp_path / "big.wav"
    sf.write(path, np.full(1600, 1e6, np.float32), SR, subtype="FLOAT")
    with caplog.at_level(logging.INFO, logger="auralens.audio"):
        _, info = load_with_info(path)
    assert info.flags == ["clipped"]
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1
    assert warned[0].getMessage() == (f"{path}: sample values reach ±1e+06, far outside ±1; "
                                      "metrics and models expect audio within ±1")
    caplog.clear()
    sf.write(path, np.full(1600, 1.5, np.float32), SR, subtype="FLOAT")  # clipped, no more
    with caplog.at_level(logging.INFO, logger="auralens.audio"):
        load_with_info(path)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_skip_message_names_the_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from auralens.io import ErrorLog

    errors = ErrorLog(tmp_path / "errors.jsonl")
    wav = tmp_path / "a" / "1-98-A-0.wav"
    with caplog.at_level(logging.ERROR):
        with errors.guard("1-98-A-0", wav):
            raise AuralensError("too short: 100 samples at 16 kHz, needs at least 400 (25 ms)")
        with errors.guard("1-99-A-0", wav):
            raise AuralensError(f"{wav}: unreadable")  # already named: not twice
    assert caplog.messages == [
        f"skipped 1-98-A-0 ({wav}): too short: 100 samples at 16 kHz, needs at least 400 (25 ms)",
        f"skipped 1-99-A-0: {wav}: unreadable"]


def test_saved_classifier_files_have_the_plain_file_mode(tmp_path: Path) -> None:
    from auralens.encoders.train_classifier import ClassifierConfig, train_classifier

    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    rows = []
    for fold in (1, 2):
        for target, name in ((0, "hum"), (1, "hiss")):
            fname = f"{fold}-{target}-A-{target}.wav"
            write(root / "audio" / fname, (0.3 * rng.standard_normal(4800)).astype(np.float32), SR)
            rows.append(f"{fname},{fold},{target},{name},True,{fold},A")
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(HEADER + "\n".join(rows) + "\n")
    cfg = ClassifierConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                           num_mel_bins=32, max_length=64, patch_stride=16, epochs=1,
                           batch_size=2, augment=False, threads=1)
    out = tmp_path / "clf"
    train_classifier(root, out, cfg)
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == 0o666 & ~umask
    assert set(modes.values()) == {0o666 & ~umask}, modes


# ----------------------------------------------------------------------------- output folders


def test_check_out_dir_refuses_a_file_a_path_under_one_and_a_dangling_link(tmp_path: Path) -> None:
    from auralens.io import check_out_dir

    taken = tmp_path / "taken"
    taken.write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    (tmp_path / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    for out, where in ((taken, "exists and is not a directory"),
                       (taken / "a" / "b", f"lies under {taken}, which is not a directory"),
                       (tmp_path / "link", "exists and is not a directory")):
        with pytest.raises(AuralensError, match="^" + re.escape(f"{out}: {where}; hint") + "$"):
            check_out_dir(out, AuralensError, "; hint")
    for out in (tmp_path, tmp_path / "new" / "sub", tmp_path / "dirlink" / "new"):
        check_out_dir(out, AuralensError)  # a folder, or one to be made under a folder
