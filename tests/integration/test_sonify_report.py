"""End-to-end listening report on a fake run directory, plus the rating server round trip."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import socket
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from auralens import audio
from auralens.evaluate.report import build_report, serve_ratings
from auralens.io import write_json, write_jsonl

SR = 16000
CLIPS = ["sine_a", "noise<b>", "chirp_c"]


def _clip(name: str, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(SR) / SR
    env = np.sin(np.pi * t) ** 2
    if name.startswith("sine"):
        return (0.5 * np.sin(2 * np.pi * 440 * t) * env).astype(np.float32)
    if name.startswith("noise"):
        return (0.2 * rng.standard_normal(SR) * env).astype(np.float32)
    return (0.4 * np.sin(2 * np.pi * (200 + 1500 * t) * t) * env).astype(np.float32)


def make_fake_run(root: Path, name: str = "run_a", encoder: str = "hf:facebook/hubert-base-ls960@layer=3",
                  posts: tuple[str, ...] = ("none", "minmax")) -> Path:
    """A run directory as `auralens sonify train` + `render` write it (sine/noise clips)."""
    rng = np.random.default_rng(0)
    run = root / name
    for cid in CLIPS:
        x = _clip(cid, rng)
        audio.write(run / "renders" / "original" / f"{cid}.wav", x, SR)
        audio.write(run / "renders" / "ceiling" / f"{cid}.wav",
                    x + 0.01 * rng.standard_normal(SR).astype(np.float32), SR)
        for k, post in enumerate(posts):
            y = 0.6 * x + (0.05 + 0.1 * k) * rng.standard_normal(SR).astype(np.float32)
            audio.write(run / "renders" / post / f"{cid}.wav", np.clip(y, -1, 1), SR)
    write_json(run / "run.json", {"command": "sonify train", "config": {
        "encoder": encoder, "layer": 3, "codec": "mel", "gate": "mlp", "lr": 1e-3, "epochs": 4}})
    write_jsonl(run / "history.jsonl", [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1), "lr": 1e-3, "time_s": 0.1}
        for e in range(4)])
    return run


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    runs = [make_fake_run(root, "run_a"), make_fake_run(root, "run_<b>", posts=("none",))]
    out = root / "report"
    build_report(runs, out, embedder="logmel", use_cache=False)
    return out


def test_report_contains_every_clip_player_image_and_table(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    for cid in CLIPS:
        assert f"<h3>{cid.replace('<', '&lt;').replace('>', '&gt;')} " in page
    assert "noise<b>" not in page and "run_<b>" not in page  # escaped everywhere
    assert page.count("<audio controls") == 3 * (4 + 3)  # per clip: original, ceiling, posts
    srcs = [s.split('"')[0] for s in page.split('src="')[1:]]
    assert srcs and all((report_dir / s.replace("&amp;", "&")).exists() for s in srcs)
    assert any(s.endswith("loss.png") for s in srcs) and any("summary_fad" in s for s in srcs)
    assert "FAD" in page and "KAD" in page and "ceiling" in page and "logmel@" in page


def test_tables_name_their_metrics_and_the_better_direction(report_dir: Path) -> None:
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    clip_head = re.findall(r"<th>([^<]*)</th>", page.split("<section", 1)[1].split("</tr>", 1)[0])
    assert clip_head == ["KAD (clip) ↓", "MR-STFT ↓", "log-mel L1 ↓", "LSD (dB) ↓", "env. corr ↑",
                         "SI-SDR (dB)* ↑"]
    assert "KAD (clip) (<code>kad_file</code> in clip_metrics.csv): the KAD between this clip" in page
    assert "KAD is an unbiased estimate" in page and "can be slightly below zero" in page
    assert "the best sonification in the column" in page
    assert "no best SI-SDR is marked among runs whose codec decodes with Griffin-Lim" in page
    # The CSV columns are data: they keep their keys.
    header = (report_dir / "clip_metrics.csv").read_text(encoding="utf-8").splitlines()[0].split(",")
    assert {"kad_file", "lsd_db", "env_corr", "si_sdr"} <= set(header)


def test_metrics_files_have_ceiling_beside_each_version(report_dir: Path) -> None:
    rows = list(csv.DictReader(open(report_dir / "metrics.csv", encoding="utf-8")))
    assert {(r["run"], r["version"]) for r in rows} == {
        ("run_a", "ceiling"), ("run_a", "none"), ("run_a", "minmax"),
        ("run__b_", "ceiling"), ("run__b_", "none")}
    by = {(r["run"], r["version"]): r for r in rows}
    a_none, a_ceil = by[("run_a", "none")], by[("run_a", "ceiling")]
    assert float(a_none["ceiling_fad"]) == pytest.approx(float(a_ceil["fad"]))
    # The ceiling (tiny noise) is far closer to the originals than the noisy renders.
    for key in ("fad", "kad", "mr_stft"):
        assert float(a_ceil[key]) < float(a_none[key]) < float(by[("run_a", "minmax")][key])
    assert a_none["encoder"].startswith("hf:facebook/hubert") and a_none["gate"] == "mlp"
    data = json.loads((report_dir / "metrics.json").read_text())
    assert data["embedder"].startswith("logmel@") and all(
        np.isfinite(r["fad"]) for r in data["rows"])
    clip_rows = list(csv.DictReader(open(report_dir / "clip_metrics.csv", encoding="utf-8")))
    assert len(clip_rows) == 3 * 5 and all(r["kad_file"] for r in clip_rows)
    assert (report_dir / "topk_fad.md").read_text().count("| ") > 2
    assert json.loads((report_dir / "run.json").read_text())["command"] == "sonify report"


def test_rating_server_round_trip(report_dir: Path) -> None:
    from auralens.evaluate.ratings import aggregate_ratings, load_ratings

    items = json.loads((report_dir / "items.json").read_text())
    assert len(items) == 3 * 5  # ceiling + posts, per clip, per run
    server, _ = serve_ratings(report_dir, "ann")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/").read().decode()
        assert "Rate sonifications" in page and page.count('class="item"') == len(items)
        tokens = re.findall(r'data-item="([^"]*)"', page)
        assert len(set(tokens)) == len(items)
        by_token = server.tokens

        def post(body: dict) -> dict:
            req = urllib.request.Request(base + "/api/rate", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            try:
                return json.loads(urllib.request.urlopen(req).read())
            except urllib.error.HTTPError as exc:
                return json.loads(exc.read())

        assert post({"item": tokens[0], "visual": 4, "audio": 2, "comment": None})["ok"]
        assert post({"item": tokens[1], "visual": 2, "audio": 4})["ok"]
        assert not post({"item": tokens[1], "visual": 9, "audio": 4})["ok"]
        assert not post({"item": "nope", "visual": 1, "audio": 1})["ok"]
        assert not post({"item": items[0]["id"], "visual": 1, "audio": 1})["ok"]  # ids are not tokens
        assert not post({"item": tokens[1], "visual": True, "audio": 4})["ok"]  # not stored as 1
        # A body that is not a rating object gets a 400 and a one-line reason, not a dropped
        # connection.
        for body in (b'"x"', b"[1]", b"null", b"{bad", json.dumps(
                {"item": tokens[1], "visual": 1, "audio": 1, "comment": [1]}).encode()):
            req = urllib.request.Request(base + "/api/rate", data=body,
                                         headers={"Content-Type": "application/json"})
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(req)
            reply = json.loads(exc.value.read())
            assert exc.value.code == 400 and not reply["ok"] and "\n" not in reply["error"], body
        first = by_token[tokens[0]]
        for kind in ("audio", "original", "image"):
            got = urllib.request.urlopen(f"{base}/media/{tokens[0]}/{kind}").read()
            assert got == (report_dir / first[kind]).read_bytes()
    finally:
        server.shutdown()
    ratings = load_ratings(report_dir / "ratings.csv")
    assert [(r.rater, r.visual, r.audio) for r in ratings] == [("ann", 4, 2), ("ann", 2, 4)]
    assert ratings[0].comment == ""  # a null comment is no comment, not the text "None"
    second = by_token[tokens[1]]
    assert [(r.run, r.version, r.clip) for r in ratings] == [
        (it["run"], f"{it['run']}/{it['version']}", it["clip"]) for it in (first, second)]
    agg = aggregate_ratings(ratings, by=("version",))
    assert {r["version"] for r in agg} == {f"{first['run']}/{first['version']}",
                                          f"{second['run']}/{second['version']}"}


def test_rating_page_hides_versions(report_dir: Path) -> None:
    items = json.loads((report_dir / "items.json").read_text())
    server, _ = serve_ratings(report_dir, "bob")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        page = urllib.request.urlopen(base + "/rate.html").read().decode()
        body = page.split("</style>", 1)[1]  # the shared stylesheet has a .ceiling class
        attrs = re.findall(r'(?:src|href|data-item)="([^"]*)"', body)
        assert attrs and all(re.fullmatch(r"media/[0-9a-f]{16}/(audio|original|image)|[0-9a-f]{16}", a)
                             for a in attrs)
        for word in ("ceiling", "minmax", "none", "run_a", "sine_a", "audio/", "img/"):
            assert word not in body.replace('preload="none"', ""), word
        assert (report_dir / "rate.html").read_text(encoding="utf-8") == page
        # Only the page, its media and the API are served: not the report that names versions.
        for path in ("/index.html", "/items.json", "/" + items[0]["audio"], "/" + items[0]["image"],
                     "/media/0000000000000000/audio", f"/media/{attrs[-1]}/run.json"):
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(base + path)
            assert exc.value.code == 404, path
    finally:
        server.shutdown()
    # A second server gives new tokens: a copied URL does not survive a restart.
    again, _ = serve_ratings(report_dir, "bob")
    try:
        assert not set(again.tokens) & set(re.findall(r'data-item="([^"]*)"', page))
    finally:
        again.shutdown()


def _record_renders(run: Path, sha: str) -> None:
    """RUN/renders/run.json as `sonify render` writes it: the checkpoint the renders came from."""
    write_json(run / "renders" / "run.json", {"command": "sonify render", "config": {
        "split": "test", "checkpoint_sha256": sha}})


def _rate_first_item(report_dir: Path, rater: str) -> None:
    server, _ = serve_ratings(report_dir, rater)
    try:
        token = next(iter(server.tokens))
        req = urllib.request.Request(
            f"http://127.0.0.1:{server.server_address[1]}/api/rate",
            data=json.dumps({"item": token, "visual": 3, "audio": 4}).encode(),
            headers={"Content-Type": "application/json"})
        assert json.loads(urllib.request.urlopen(req).read())["ok"]
    finally:
        server.shutdown()


def test_the_rating_server_names_the_render_each_rating_rates(tmp_path: Path) -> None:
    """Copied audio is the render the report was built from; linked audio is the run's
    renders as they are now (rendered again since the report)."""
    from auralens.evaluate.ratings import load_ratings

    run = make_fake_run(tmp_path, posts=("none",))
    _record_renders(run, "a" * 64)
    copied, linked = tmp_path / "copied", tmp_path / "linked"
    build_report([run], copied, use_cache=False)
    build_report([run], linked, use_cache=False, link_audio=True)
    _record_renders(run, "b" * 64)  # trained and rendered again
    for report_dir, render in ((copied, "a" * 12), (linked, "b" * 12)):
        _rate_first_item(report_dir, "ann")
        assert [r.render for r in load_ratings(report_dir / "ratings.csv")] == [render]
        header = (report_dir / "ratings.csv").read_text(encoding="utf-8").splitlines()[0]
        assert header.split(",")[-1] == "render"


def test_a_rebuilt_report_judges_ratings_by_the_render_they_name(tmp_path: Path, caplog) -> None:
    """Only ratings of another render than the run's now are named, on every rebuild, and
    not those of the new render made before the report was rebuilt."""
    import logging

    from auralens.evaluate.ratings import save_rating

    run = make_fake_run(tmp_path, posts=("none",))
    _record_renders(run, "a" * 64)
    out = tmp_path / "rep"
    build_report([run], out, use_cache=False)
    rate = {"run": "run_a", "version": "run_a/none", "clip": "sine_a", "visual": 3, "audio": 3}
    save_rating(out / "ratings.csv", rater="ann", render="a" * 12, **rate)
    _record_renders(run, "b" * 64)  # trained and rendered again
    save_rating(out / "ratings.csv", rater="bob", render="b" * 12, **rate)  # e.g. in the web UI
    said = (f"{out / 'ratings.csv'} holds 1 rating(s) of earlier renders of run_a (trained and "
            "rendered again since); `auralens sonify ratings` counts only the latest rated render")
    for _ in range(2):  # the second rebuild's run.json already records the new render
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="auralens.evaluate.report"):
            build_report([run], out, use_cache=False)
        assert said in caplog.text
        assert json.loads((out / "run.json").read_text())["stale_ratings"].startswith(said)


def test_busy_port_is_a_one_line_error(report_dir: Path, tmp_path: Path, capsys) -> None:
    from auralens.cli import main
    from auralens.evaluate.report import ReportError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ReportError, match=f"port {port} on 127.0.0.1 is not available"):
            serve_ratings(report_dir, "ann", port=port)
        capsys.readouterr()
        assert main(["sonify", "rate", str(report_dir), "--rater", "ann", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: port ") and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(ReportError, match="0–65535"):
        serve_ratings(report_dir, "ann", port=70000)


def test_circular_embedder_is_flagged() -> None:
    from auralens.evaluate.embedders import circularity_warning

    cfg = {"config": {"encoder": "hf:facebook/hubert-base-ls960@layer=3", "codec": "mel"}}
    assert "circular" in circularity_warning("hf:facebook/hubert-base-ls960@layer=9", cfg)
    assert circularity_warning("clap:laion/clap-htsat-unfused", cfg) is None
    assert circularity_warning("logmel", cfg) is None


def test_cli_report_and_ratings(tmp_path: Path) -> None:
    from auralens.cli import main

    run = make_fake_run(tmp_path, posts=("none",))
    assert main(["sonify", "report", str(run), "--out", str(tmp_path / "rep"), "--embedder", "mfcc"]) == 0
    assert "mfcc@" in (tmp_path / "rep" / "index.html").read_text()
    csv_path = tmp_path / "r.csv"
    from auralens.evaluate.ratings import save_rating

    save_rating(csv_path, rater="x", run="run_a", version="run_a/none", clip="c", visual=3, audio=4)
    assert main(["sonify", "ratings", str(csv_path), "--out", str(tmp_path / "agg.md")]) == 0
    assert "| run_a/none | 3.00 ± – | 4.00 ± – | 1 |" in (tmp_path / "agg.md").read_text()
    assert main(["sonify", "report", str(tmp_path / "missing"), "--out", str(tmp_path / "x")]) == 1


def test_each_bad_render_is_listed_once(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path, posts=("minmax",))
    bad = [run / "renders" / "minmax" / "sine_a.wav", run / "renders" / "ceiling" / "chirp_c.wav"]
    bad[0].write_bytes(b"junk\n")
    bad[1].write_bytes(b"")
    out = tmp_path / "rep"
    build_report([run], out, embedder="logmel", use_cache=False)
    errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
    assert sorted(e["path"] for e in errors) == sorted(str(p) for p in bad)
    page = (out / "index.html").read_text()
    assert "2 file(s) could not be used" in page
    # No player (and no copied file) for an unusable render; the good ones keep theirs.
    assert not (out / "audio" / "run_a" / "minmax" / "sine_a.wav").exists()
    assert 'src="audio/run_a/minmax/chirp_c.wav"' in page
    assert 'src="audio/run_a/minmax/sine_a.wav"' not in page


def test_report_scores_only_the_clips_listed_by_render(tmp_path: Path) -> None:
    from auralens.evaluate.sonify_eval import load_run

    run = make_fake_run(tmp_path)
    write_json(run / "renders" / "run.json", {"config": {"split": "test", "clips": ["sine_a", "chirp_c"]}})
    assert load_run(run).clips == ["chirp_c", "sine_a"]
    assert sorted(load_run(run).versions["minmax"]) == ["chirp_c", "sine_a"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_names_that_clean_to_the_same_file_name_stay_apart(tmp_path: Path) -> None:
    """Clip ids ``a b``/``a_b`` and versions ``x y``/``x_y`` each keep their own files."""
    run = make_fake_run(tmp_path, posts=("x y", "x_y"))
    renders = run / "renders"
    for d in renders.iterdir():
        (d / "sine_a.wav").rename(d / "a b.wav")
        (d / "noise<b>.wav").rename(d / "a_b.wav")
    out = tmp_path / "rep"
    build_report([run], out, embedder="logmel", use_cache=False)
    items = json.loads((out / "items.json").read_text())
    assert len(items) == 3 * 3  # ceiling, "x y", "x_y" per clip
    for key in ("audio", "image"):
        assert len({it[key] for it in items}) == len(items), key
    for it in items:
        assert _md5(out / it["audio"]) == _md5(renders / it["version"] / f"{it['clip']}.wav")
        assert _md5(out / it["original"]) == _md5(renders / "original" / f"{it['clip']}.wav")
    # Names that cleaning leaves alone keep them; rewritten ones get a hash of the original.
    assert (out / "audio/run_a/x_y/a_b.wav").exists()
    assert _md5(out / "audio/run_a/x_y/a_b.wav") == _md5(renders / "x_y" / "a_b.wav")
    page = (out / "index.html").read_text(encoding="utf-8")
    sections = page.split("<section")[1:]
    assert len(sections) == 3
    srcs = [re.findall(r'src="([^"]*)"', sec) for sec in sections]
    assert len({s for group in srcs for s in group}) == sum(len(g) for g in srcs)  # no shared file
    for sec, group in zip(sections, srcs, strict=True):
        cid = "a b" if "<h3>a b " in sec else "a_b" if "<h3>a_b " in sec else None
        if cid is None:
            continue
        originals = [s for s in group if "/original/" in s]
        assert [_md5(out / s) for s in originals] == [_md5(renders / "original" / f"{cid}.wav")]


def test_bad_report_options_are_refused_before_any_work(tmp_path: Path, capsys) -> None:
    from auralens.cli import main
    from auralens.evaluate.report import ReportError

    run = make_fake_run(tmp_path, posts=("none",))
    out = tmp_path / "rep"
    for kwargs, pattern in (({"smoothing": 1.0}, r"smoothing .*\[0, 1\)"),
                            ({"smoothing": -0.1}, "smoothing"), ({"smoothing": "x"}, "smoothing"),
                            ({"smoothing": float("nan")}, "smoothing"),
                            ({"topk": 0}, "topk must be an integer ≥ 1"),
                            ({"topk": -2}, "topk"), ({"max_clips": 0}, "max_clips must be"),
                            ({"max_clips": -1}, "max_clips"), ({"sigma": 0.0}, "sigma must be"),
                            ({"sigma": float("inf")}, "sigma must be")):
        with pytest.raises(ReportError, match=pattern):
            build_report([run], out, use_cache=False, **kwargs)
        assert not out.exists()
    for flags in (["--smoothing", "1.0"], ["--smoothing", "auto?"], ["--max-clips", "-1"],
                  ["--max-clips", "0"], ["--topk", "0"], ["--sigma", "-1"]):
        capsys.readouterr()
        assert main(["sonify", "report", str(run), "--out", str(out), *flags]) == 1, flags
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (flags, err)
        assert not out.exists()


def test_max_clips_and_default_smoothing(tmp_path: Path, monkeypatch) -> None:
    from auralens.evaluate import plots

    weights = []
    real = plots.plot_loss_curves
    monkeypatch.setattr(plots, "plot_loss_curves",
                        lambda h, path, smoothing=None, title=None: weights.append(smoothing)
                        or real(h, path, smoothing=smoothing, title=title))
    run = make_fake_run(tmp_path, posts=("none",))  # 4 epochs of history
    out = tmp_path / "rep"
    build_report([run], out, embedder="logmel", use_cache=False, max_clips=1)
    assert (out / "index.html").read_text().count("<section") == 1
    assert len(json.loads((out / "items.json").read_text())) == 2  # one clip: ceiling + none
    build_report([run], out, embedder="logmel", use_cache=False, smoothing=0.5)
    assert weights == [None, 0.5]  # a 4-point per-epoch history is drawn raw by default
    assert (out / "index.html").read_text().count("<section") == 3


def test_report_on_mostly_silent_clips_uses_the_non_zero_median_bandwidth(tmp_path: Path) -> None:
    """1 s of sound padded to 5 s (as prepare does to short clips): most log-mel frames are the
    same silent frame, so the median frame distance is 0. The report must still score the run,
    with σ the median of the non-zero distances rather than an error or a ~0 bandwidth."""
    rng = np.random.default_rng(0)
    run = tmp_path / "silent_run"
    for cid in CLIPS:
        x = np.zeros(5 * SR, np.float32)
        x[:SR] = _clip(cid, rng)
        audio.write(run / "renders" / "original" / f"{cid}.wav", x, SR)
        audio.write(run / "renders" / "ceiling" / f"{cid}.wav", x, SR)
        y = x.copy()
        y[:SR] = np.clip(0.6 * x[:SR] + 0.05 * rng.standard_normal(SR).astype(np.float32), -1, 1)
        audio.write(run / "renders" / "minmax" / f"{cid}.wav", y, SR)
    build_report([run], tmp_path / "report", embedder="logmel", use_cache=False)
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    sigma = metrics["kad_sigma"]["silent_run"]
    assert sigma > 1.0  # the spread of the sounding frames, not 0 or a rounding residue
    kad = {r["version"]: r["kad"] for r in metrics["rows"]}
    # The ceiling here is the originals themselves: ≈ 0 (unbiased, so slightly negative).
    assert abs(kad["ceiling"]) < 0.1 < kad["minmax"]


def test_a_fixed_sigma_is_used_for_every_run_and_named_on_the_page(tmp_path: Path) -> None:
    from auralens.cli import main

    runs = [make_fake_run(tmp_path, "run_a"), make_fake_run(tmp_path, "run_b", posts=("none",))]
    free = tmp_path / "free"
    build_report(runs, free, embedder="logmel", use_cache=False)
    median = json.loads((free / "metrics.json").read_text())["kad_sigma"]["run_a"]
    fixed = tmp_path / "fixed"
    assert main(["sonify", "report", *map(str, runs), "--out", str(fixed), "--sigma", "2.5"]) == 0
    metrics = json.loads((fixed / "metrics.json").read_text())
    assert metrics["kad_sigma"] == {"run_a": 2.5, "run_b": 2.5} and median != 2.5
    kad = {(r["run"], r["version"]): r["kad"] for r in metrics["rows"]}
    kad_free = {(r["run"], r["version"]): r["kad"] for r in json.loads((free / "metrics.json").read_text())["rows"]}
    assert kad.keys() == kad_free.keys() and kad != kad_free  # another kernel, other values
    assert "fixed σ = 2.5" in (fixed / "index.html").read_text()
    assert "fixed σ" not in (free / "index.html").read_text()


def test_bad_history_lines_are_skipped_and_the_report_is_written(tmp_path: Path, capsys) -> None:
    from auralens.cli import main

    run = make_fake_run(tmp_path, posts=("none",))
    with open(run / "history.jsonl", "a", encoding="utf-8") as fh:
        fh.write('[1, 2]\n{"epoch": 9, "train_loss": "nan?"}\n{"epoch": null, "val_loss": 0.3}\n')
    out = tmp_path / "rep"
    assert main(["sonify", "report", str(run), "--out", str(out), "--embedder", "logmel"]) == 0
    page = (out / "index.html").read_text(encoding="utf-8")
    assert (out / "img" / "run_a" / "loss.png").exists() and "loss.png" in page
    hist = run / "history.jsonl"
    assert (f"{hist}: 3 line(s) left out of the loss curves: line 5 (not a JSON object), "
            "6 (train_loss is &quot;nan?&quot;, not a number), 7 (epoch is null, not a number)") in page
    assert any(str(hist) in w for w in json.loads((out / "metrics.json").read_text())["warnings"])


def _summary_rows(page: str) -> list[list[str]]:
    table = page.split('<h2 id="summary">', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", tr) for tr in table.split("<tr")[1:]]


def test_every_version_is_scored_on_the_clips_all_of_them_have(tmp_path: Path) -> None:
    """No ceiling render of chirp_c and an unreadable minmax render of sine_a: every version,
    the ceiling included, is scored on noise<b> alone, and the page says so."""
    run = make_fake_run(tmp_path)
    (run / "renders" / "ceiling" / "chirp_c.wav").unlink()
    (run / "renders" / "minmax" / "sine_a.wav").write_bytes(b"junk\n")
    out = tmp_path / "rep"
    build_report([run], out, embedder="logmel", use_cache=False)
    rows = {r["version"]: r for r in csv.DictReader(open(out / "metrics.csv", encoding="utf-8"))}
    assert {v: r["n_clips"] for v, r in rows.items()} == {"ceiling": "1", "none": "1", "minmax": "1"}
    # (then a note on the shrinkage that one clip's frames need)
    assert rows["ceiling"]["notes"].startswith("1 clip(s) without a render: chirp_c; "
                                        "left out as not usable in every version: sine_a")
    assert rows["minmax"]["notes"].startswith("1 render(s) failed to load: sine_a; "
                                       "left out as not usable in every version: chirp_c")
    assert rows["none"]["notes"].startswith("left out as not usable in every version: chirp_c, sine_a")
    for key in ("fad", "kad", "mr_stft"):  # the ceiling beside each version is its own row's
        assert rows["none"][f"ceiling_{key}"] == rows["minmax"][f"ceiling_{key}"] == rows["ceiling"][key]
    # The same clip scored alone in each version: its per-clip metrics are the version's means.
    clips = {(r["version"], r["clip"]): r for r in csv.DictReader(open(out / "clip_metrics.csv"))}
    for v in rows:
        assert float(rows[v]["mr_stft"]) == pytest.approx(float(clips[(v, "noise<b>")]["mr_stft"]))
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "every version is scored on the 1 clip(s) usable in all of them; left out: chirp_c, sine_a" in page
    table = _summary_rows(page)
    head = table[0]
    assert "n_clips" in head and head[-1] == "notes"
    by_version = {r[head.index("version")]: r for r in table[1:]}
    assert by_version["minmax"][head.index("n_clips")] == "1"
    assert by_version["minmax"][-1] == _e(rows["minmax"]["notes"])


def _e(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_versions_without_a_common_clip_say_their_rows_differ(tmp_path: Path) -> None:
    """Each version misses a different clip: no clip is usable in all, so each is scored on its
    own two, the page warns, and no ceiling from other clips is put beside a version."""
    run = make_fake_run(tmp_path)
    (run / "renders" / "ceiling" / "chirp_c.wav").unlink()
    (run / "renders" / "none" / "noise<b>.wav").unlink()
    (run / "renders" / "minmax" / "sine_a.wav").write_bytes(b"junk\n")
    out = tmp_path / "rep"
    build_report([run], out, embedder="logmel", use_cache=False)
    data = json.loads((out / "metrics.json").read_text())
    rows = {r["version"]: r for r in data["rows"]}
    assert {v: r["n_clips"] for v, r in rows.items()} == {"ceiling": 2, "none": 2, "minmax": 2}
    assert not any(k.startswith("ceiling_") for r in rows.values() for k in r)
    assert rows["minmax"]["notes"] == "1 render(s) failed to load: sine_a"
    assert rows["none"]["notes"] == "1 clip(s) without a render: noise<b>"
    assert any("each version is scored on its own clips" in w for w in data["warnings"])
    assert "each version is scored on its own clips" in (out / "index.html").read_text(encoding="utf-8")


def test_runs_scored_on_different_clips_are_flagged(tmp_path: Path) -> None:
    runs = [make_fake_run(tmp_path, "run_a", posts=("none",)),
            make_fake_run(tmp_path, "run_b", posts=("none",))]
    for d in (runs[1] / "renders").iterdir():
        (d / "chirp_c.wav").unlink()
    out = tmp_path / "rep"
    build_report(runs, out, embedder="logmel", use_cache=False)
    rows = json.loads((out / "metrics.json").read_text())["rows"]
    assert {(r["run"], r["n_clips"]) for r in rows} == {("run_a", 3), ("run_b", 2)}
    assert "the rows are not all scored on the same clips" in (out / "index.html").read_text()
    same = tmp_path / "same"
    build_report(runs[:1], same, embedder="logmel", use_cache=False)
    assert "not all scored on the same clips" not in (same / "index.html").read_text()


def test_kad_file_scores_each_clip_against_its_own_original(tmp_path: Path, monkeypatch) -> None:
    """A render that is another clip's original is a typical member of the set but a bad
    reconstruction: kad_file ranks it behind the ceiling on every clip. A render identical to
    its original scores the unbiased estimator's value for one sample against itself,
    −100·2(1 − k̄)/n, which lies in [−200/n, 0] for n frames."""
    from auralens.evaluate.embedders import build_embedder
    from auralens.evaluate.sonify_eval import evaluate_run, load_run

    run = make_fake_run(tmp_path, posts=())
    renders = run / "renders"
    for i, cid in enumerate(CLIPS):
        x, _ = audio.load_sr(renders / "original" / f"{cid}.wav")
        audio.write(renders / "ceiling" / f"{cid}.wav", 0.9 * x, SR)  # a small gain error
        other = CLIPS[(i + 1) % len(CLIPS)]
        for post, src in (("swapped", other), ("copy", cid)):
            (renders / post).mkdir(exist_ok=True)
            (renders / post / f"{cid}.wav").write_bytes((renders / "original" / f"{src}.wav").read_bytes())
    emb = build_embedder("logmel")
    scores = evaluate_run(load_run(run), emb, spectral=False)
    kad_file = {v: {c: m["kad_file"] for c, m in vs.clip_metrics.items()}
                for v, vs in scores.versions.items()}
    for cid in CLIPS:
        assert kad_file["ceiling"][cid] < kad_file["swapped"][cid], cid
        n = emb.embed_file(renders / "original" / f"{cid}.wav").shape[0]
        assert -200.0 / n <= kad_file["copy"][cid] <= 0.0, cid
    # The means in the rows follow: the ceiling beside a version is comparable with it.
    rows = {r["version"]: r for r in scores.rows()}
    assert rows["swapped"]["ceiling_kad_file"] == rows["ceiling"]["kad_file"] < rows["swapped"]["kad_file"]

    # A clip with fewer than 2 frames in a render has no kad_file: NaN and a note, not a crash.
    real = emb.embed_file
    monkeypatch.setattr(emb, "embed_file", lambda p, cache=None: real(p, cache=cache)[:1]
                        if Path(p).parent.name == "copy" and Path(p).stem == "sine_a"
                        else real(p, cache=cache))
    scores = evaluate_run(load_run(run), emb, spectral=False)
    copy = scores.versions["copy"]
    assert np.isnan(copy.clip_metrics["sine_a"]["kad_file"])
    assert np.isfinite(copy.clip_metrics["chirp_c"]["kad_file"])
    assert ("kad_file not computed for 1 clip(s) with fewer than 2 embedding frames in the "
            "original or the render: sine_a") in copy.notes


def _run_in(root: Path, folder: str, **config) -> Path:
    run = make_fake_run(root / folder, "run", posts=("minmax",))
    record = json.loads((run / "run.json").read_text())
    record["config"].update(config)
    write_json(run / "run.json", record)
    return run


def test_runs_are_labelled_by_the_settings_that_differ(tmp_path: Path) -> None:
    """Three runs in folders all named ``run`` that differ in their layer are labelled
    ``layer=patch``, ``layer=2``, ``layer=4`` everywhere, not ``run``, ``run-2``, ``run-3``."""
    runs = [_run_in(tmp_path, f"layer={layer}", layer=layer) for layer in ("patch", 2, 4)]
    out = tmp_path / "rep"
    build_report(runs, out, embedder="logmel", use_cache=False, max_clips=1)
    labels = ["layer=patch", "layer=2", "layer=4"]
    rows = list(csv.DictReader(open(out / "metrics.csv", encoding="utf-8")))
    assert list(dict.fromkeys(r["run"] for r in rows)) == labels
    assert sorted(p.name for p in (out / "audio").iterdir()) == sorted(labels)
    assert sorted(p.name for p in (out / "img").iterdir() if p.is_dir()) == sorted(labels)
    assert {r["run"] for r in csv.DictReader(open(out / "topk_kad.csv", encoding="utf-8"))} == set(labels)
    page = (out / "index.html").read_text(encoding="utf-8")
    for label in labels:
        assert f'<span class="meta">· {label}</span>' in page and f"<h3>{label}</h3>" in page
    assert "run-2" not in page and "run-3" not in page


def test_a_constant_original_is_named_constant_not_silent(tmp_path: Path) -> None:
    run = make_fake_run(tmp_path)
    cid = CLIPS[0]
    for version in ("original", "minmax", "none"):
        path = run / "renders" / version / f"{cid}.wav"
        assert path.exists(), path
        audio.write(path, np.full(5 * SR, 0.3, np.float32), SR)  # a DC offset, no sound
    build_report([run], tmp_path / "report", embedder="logmel", use_cache=False)
    rows = {r["version"]: r for r in json.loads((tmp_path / "report" / "metrics.json").read_text())["rows"]}
    for version in ("minmax", "none"):
        assert rows[version]["notes"] == (
            f"{cid}: the original is constant (a DC offset with no sound; silent once its mean is "
            "removed): si_sdr undefined, given as null")
