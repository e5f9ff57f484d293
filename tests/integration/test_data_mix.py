"""FUSS-recipe mixer and FUSS loader: exact sums, counts, determinism, resume, bad clips."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.data import DatasetError
from auralens.data.esc50 import load_esc50
from auralens.data.fuss import load_fuss
from auralens.data.mix import build_mixtures, count_histogram, source_count
from auralens.data.synth import synthesize

SR, DUR = 8000, 3.0
FAST = dict(sample_rate=SR, duration=DUR)


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("mixlib") / "lib", clips_per_class=3, seed=5,
                      sample_rate=SR, duration=2.0)


@pytest.fixture(scope="module")
def reverb_run(lib: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("mix") / "out"
    return out, build_mixtures(lib, out, n=8, seed=3, **FAST)


def _read(p: Path) -> np.ndarray:
    x, sr = sf.read(str(p), dtype="float32")
    assert sr == SR
    return x


def test_sources_sum_to_mixture(reverb_run: tuple[Path, list]) -> None:
    out, records = reverb_run
    assert [r.id for r in records] == [f"train/example{i:05d}" for i in range(8)]
    for rec in records:
        assert sf.info(str(rec.mixture)).subtype == "FLOAT"
        mix = _read(rec.mixture)
        assert mix.shape == (int(SR * DUR),)
        srcs = np.stack([_read(s.path) for s in rec.sources])
        assert srcs.shape == (rec.n_sources, len(mix))
        assert np.max(np.abs(srcs.sum(0) - mix)) < 1e-5
        assert 0.0 < np.max(np.abs(mix)) <= 0.9 + 1e-6
        # every source carries energy (no near-silent references)
        assert all(np.sqrt(np.mean(s**2)) > 1e-4 for s in srcs), rec.id
        assert rec.meta["reverb"] and len(rec.meta["room"]["sources"]) == rec.n_sources
        dims = rec.meta["room"]["dims"]
        assert 3 <= dims[0] <= 7 and 4 <= dims[1] <= 8 and 2.13 <= dims[2] <= 3.05
        assert len(set(rec.labels)) == rec.n_sources  # distinct labels while the pool allows


def test_fuss_layout_and_manifest(reverb_run: tuple[Path, list]) -> None:
    out, records = reverb_run
    rec = records[-1]
    names = sorted(p.name for p in (out / "train" / "example00007_sources").iterdir())
    expected = ["background0_sound.wav"] + [f"foreground{k}_sound.wav" for k in range(rec.n_sources - 1)]
    assert names == expected
    lines = (out / "train" / "example00007.txt").read_text().splitlines()
    assert [ln.split("\t")[2] for ln in lines] == rec.labels
    listing = (out / "train_example_list.txt").read_text().splitlines()
    assert listing[7].split("\t")[0] == "train/example00007.wav" and len(listing) == 8
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 8 and not Path(manifest[0]["mixture"]).is_absolute()
    assert manifest[3]["n_sources"] == records[3].n_sources
    # the loader gives the same scenes from the manifest and from the bare FUSS layout
    via_manifest = load_fuss(out)
    assert [r.to_dict() for r in via_manifest] == [r.to_dict() for r in records]
    bare = out.parent / "bare"
    shutil.copytree(out, bare)
    (bare / "manifest.jsonl").unlink()
    for variant in (bare, bare / "train"):
        got = load_fuss(variant)
        assert [r.id for r in got] == [r.id for r in records]
        assert [r.labels for r in got] == [r.labels for r in records]
        assert [[s.role for s in r.sources] for r in got] == [[s.role for s in r.sources] for r in records]
        assert got[2].sample_rate == SR and got[2].duration == pytest.approx(DUR)
    assert load_fuss(out, split="validation") == []


def test_official_release_layout(tmp_path: Path) -> None:
    """Mirror of the FUSS release: list file, scaper .txt with appended RIR names, 'sound' labels."""
    root = tmp_path / "ssdata_reverb"
    for split, n_src in (("train", 3), ("eval", 1)):
        d = root / split / "example00000_sources"
        d.mkdir(parents=True)
        parts = [f"{split}/example00000.wav"]
        for k in range(n_src):
            name = "background0_sound.wav" if k == 0 else f"foreground{k - 1}_sound.wav"
            sf.write(str(d / name), np.zeros(1600), 16000, subtype="PCM_16")
            parts.append(f"{split}/example00000_sources/{name}")
        sf.write(str(root / parts[0]), np.zeros(1600), 16000, subtype="PCM_16")
        (root / f"{split}_example_list.txt").write_text("\t".join(parts) + "\n")
    (root / "train" / "example00000.txt").write_text(
        "0.000\t10.000\tsound\n1.500\t3.250\tsound\n4.000\t9.000\tsound\n\n"
        "room impulse responses used:\ntrain/rir_00001/background0.wav\n")
    recs = load_fuss(root)
    assert [r.id for r in recs] == ["train/example00000", "eval/example00000"]
    assert recs[0].labels == ["sound"] * 3 and recs[0].sources[1].onset == 1.5
    assert recs[0].sources[1].offset == 3.25 and recs[0].sources[0].role == "background"
    assert recs[1].n_sources == 1 and recs[1].duration == pytest.approx(0.1)
    assert [r.id for r in load_fuss(root, split="eval")] == ["eval/example00000"]
    with pytest.raises(DatasetError, match="no FUSS examples"):
        load_fuss(tmp_path / "ssdata_reverb" / "train" / "example00000_sources")


def test_count_histogram_uniform(lib: Path, tmp_path: Path) -> None:
    recs = build_mixtures(lib, tmp_path / "h", n=40, seed=11, reverb=False, sample_rate=SR, duration=1.0)
    hist = count_histogram(recs)
    assert hist == {1: 10, 2: 10, 3: 10, 4: 10}
    assert [r.n_sources for r in recs] == [source_count(11, "train", i, 1, 4) for i in range(40)]
    assert sum(r.sources[0].role == "background" for r in recs) == 40
    assert all(s.role == "foreground" for r in recs for s in r.sources[1:])
    # the counts are not a fixed cycle: the order within each block depends on the seed
    other = [source_count(12, "train", i, 1, 4) for i in range(40)]
    assert other != [r.n_sources for r in recs] and Counter(other) == Counter(hist)


def test_determinism(lib: Path, tmp_path: Path) -> None:
    a = build_mixtures(lib, tmp_path / "a", n=3, seed=9, **FAST)
    b = build_mixtures(lib, tmp_path / "b", n=3, seed=9, **FAST)
    c = build_mixtures(lib, tmp_path / "c", n=3, seed=10, **FAST)
    for ra, rb in zip(a, b, strict=True):
        assert ra.mixture.read_bytes() == rb.mixture.read_bytes()
        assert [s.path.read_bytes() for s in ra.sources] == [s.path.read_bytes() for s in rb.sources]
        assert ra.meta == rb.meta and ra.labels == rb.labels
    assert any(ra.mixture.read_bytes() != rc.mixture.read_bytes() for ra, rc in zip(a, c, strict=True))


def test_no_reverb_and_background_span(lib: Path, tmp_path: Path) -> None:
    recs = build_mixtures(lib, tmp_path / "dry", n=8, seed=4, reverb=False, **FAST)
    n = int(SR * DUR)
    for rec in recs:
        assert rec.meta["reverb"] is False and "room" not in rec.meta
        bg = rec.sources[0]
        assert bg.role == "background" and bg.onset == 0.0 and bg.offset == pytest.approx(DUR)
        x = _read(bg.path)
        win = np.sqrt(np.mean(x[: n // 4000 * 4000].reshape(-1, SR // 2) ** 2, axis=1))
        assert win.min() > 0 and 20 * np.log10(win.min() / win.max()) > -45, rec.id
        for s in rec.sources[1:]:
            y = _read(s.path)
            a, b = round(s.onset * SR), round(s.offset * SR)
            # dry foreground: exactly silent outside its event, active inside
            assert not np.any(y[:a]) and not np.any(y[b:])
            assert np.sqrt(np.mean(y[a:b] ** 2)) > 1e-4
    wet = build_mixtures(lib, tmp_path / "wet", n=8, seed=4, **FAST)
    assert [r.labels for r in wet] == [r.labels for r in recs]  # same recipe, rooms added
    # reverberated events ring on after their dry offset; dry ones stop dead
    ended = [(s, d) for r, rd in zip(wet, recs, strict=True)
             for s, d in zip(r.sources[1:], rd.sources[1:], strict=True) if s.offset < DUR - 0.1]
    assert ended
    for s, d in ended:
        b = round(s.offset * SR)
        assert np.any(_read(s.path)[b:b + SR // 50] != 0) and not np.any(_read(d.path)[b:] != 0)


def test_resume_keeps_finished_examples(lib: Path, tmp_path: Path) -> None:
    out = tmp_path / "r"
    first = build_mixtures(lib, out, n=4, seed=1, **FAST)
    before = {r.id: r.mixture.read_bytes() for r in first}
    mtimes = {r.id: r.mixture.stat().st_mtime_ns for r in first}
    first[2].mixture.unlink()  # an interrupted example
    more = build_mixtures(lib, out, n=6, seed=1, **FAST)
    assert [r.id for r in more] == [f"train/example{i:05d}" for i in range(6)]
    for r in more[:4]:
        assert r.mixture.read_bytes() == before[r.id]
    assert more[0].mixture.stat().st_mtime_ns == mtimes[more[0].id]  # kept, not rewritten
    assert more[2].mixture.stat().st_mtime_ns != mtimes[more[2].id]  # regenerated
    fresh = build_mixtures(lib, tmp_path / "fresh", n=6, seed=1, **FAST)
    assert [r.mixture.read_bytes() for r in fresh] == [r.mixture.read_bytes() for r in more]
    assert len((out / "manifest.jsonl").read_text().splitlines()) == 6
    with pytest.raises(DatasetError, match="different settings"):
        build_mixtures(lib, out, n=6, seed=2, **FAST)
    # another split can share the directory
    build_mixtures(lib, out, n=2, seed=1, split="validation", **FAST)
    assert len(load_fuss(out)) == 8 and len(load_fuss(out, split="train")) == 6


def test_corrupt_clip_is_skipped(lib: Path, tmp_path: Path) -> None:
    clips = load_esc50(lib)
    pool = [c for c in clips if c.label in ("siren", "rain", "wind")][:3]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really audio" * 10)
    pool[1].path = bad
    recs = build_mixtures(pool, tmp_path / "o", n=4, seed=0, max_sources=2, **FAST)
    assert len(recs) == 4
    errors = [json.loads(x) for x in (tmp_path / "o" / "errors.jsonl").read_text().splitlines()]
    assert [e["item"] for e in errors] == [pool[1].id] and "broken.wav" in errors[0]["path"]
    assert all(s.origin != pool[1].id for r in recs for s in r.sources)


def test_too_few_usable_clips_says_how_many(lib: Path, tmp_path: Path) -> None:
    clips = [c for c in load_esc50(lib) if c.label in ("siren", "rain", "wind")][:3]
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00not really audio" * 10)
    clips[1].path = bad
    with pytest.raises(DatasetError, match="an example needs 3 distinct clips, 3 are listed and 1 of "
                                           "them are unreadable or silent"):
        build_mixtures(clips, tmp_path / "o", n=1, seed=0, min_sources=3, max_sources=3, **FAST)


def test_resume_with_broken_clips_gives_the_straight_run(lib: Path, tmp_path: Path) -> None:
    # Which broken clips an earlier example happened to hit must not change later draws.
    broken = tmp_path / "lib"
    shutil.copytree(lib, broken)
    for wav in sorted((broken / "audio").glob("*.wav"))[::4]:
        wav.write_bytes(b"not audio")
    straight = build_mixtures(broken, tmp_path / "straight", n=10, seed=4, max_sources=3, **FAST)
    build_mixtures(broken, tmp_path / "resumed", n=3, seed=4, max_sources=3, **FAST)
    resumed = build_mixtures(broken, tmp_path / "resumed", n=10, seed=4, max_sources=3, **FAST)
    assert [r.mixture.read_bytes() for r in resumed] == [r.mixture.read_bytes() for r in straight]
    assert [r.meta for r in resumed] == [r.meta for r in straight]


def test_resume_follows_the_clips_not_the_path_spelling(lib: Path, tmp_path: Path, monkeypatch) -> None:
    copy = tmp_path / "data" / "lib"
    shutil.copytree(lib, copy)
    out = tmp_path / "out"
    build_mixtures(copy, out, n=2, seed=1, **FAST)
    monkeypatch.chdir(tmp_path / "data")
    assert len(build_mixtures(Path("lib"), out, n=3, seed=1, **FAST)) == 3  # relative spelling
    shutil.move(str(copy), str(tmp_path / "moved"))
    assert len(build_mixtures(tmp_path / "moved", out, n=4, seed=1, **FAST)) == 4  # moved folder
    # Another library with the same file names and sizes is refused.
    other = tmp_path / "other"
    shutil.copytree(tmp_path / "moved", other)
    for wav in sorted((other / "audio").glob("*.wav")):
        data, sr = sf.read(wav, dtype="float32")
        sf.write(wav, -data, sr, subtype=sf.info(str(wav)).subtype)  # same size, other audio
    with pytest.raises(DatasetError, match=r"different settings \(clips \(the source.s files differ\)\)"):
        build_mixtures(other, out, n=4, seed=1, **FAST)
    # A different dataset is refused, whatever its path.
    victim = sorted((tmp_path / "moved" / "audio").glob("*.wav"))[0]
    victim.unlink()
    with pytest.raises(DatasetError, match=r"different settings \(clips \(the source.s files differ\)\)"):
        build_mixtures(tmp_path / "moved", out, n=4, seed=1, **FAST)


def test_bad_inputs(lib: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        build_mixtures(tmp_path / "missing", tmp_path / "o", n=1)
    with pytest.raises(DatasetError, match="no clips"):
        build_mixtures(lib, tmp_path / "o", n=1, folds=[9])
    with pytest.raises(DatasetError, match="min_sources"):
        build_mixtures(lib, tmp_path / "o", n=1, max_sources=0)


@pytest.mark.parametrize("reverb", ["false", "maybe", 0, None])
def test_non_bool_reverb_is_refused(lib: Path, tmp_path: Path, reverb: object) -> None:
    # a string "false" is truthy: it used to turn reverb on silently
    with pytest.raises(DatasetError, match="reverb must be true or false"):
        build_mixtures(lib, tmp_path / "o", n=1, reverb=reverb, **FAST)  # type: ignore[arg-type]
    assert not (tmp_path / "o").exists()


def test_folds_filter(lib: Path, tmp_path: Path) -> None:
    recs = build_mixtures(lib, tmp_path / "f", n=4, seed=0, folds=[1], reverb=False, **FAST)
    origins = {s.origin for r in recs for s in r.sources}
    assert origins and all(o.startswith("1-") for o in origins)


def test_recipe_mixer_crops_sum_and_mark_absent_sources(lib: Path, tmp_path: Path) -> None:
    from auralens.data.mix import RecipeMixer, RoomBank
    from auralens.io import ErrorLog

    bank = RoomBank(2, 4, SR, seed=1)
    assert len(bank.rooms) == 2 and all(len(r) == 4 for r in bank.rooms)
    mixer = RecipeMixer(load_esc50(lib), num_outputs=4, max_sources=4, sample_rate=SR,
                        errors=ErrorLog(tmp_path / "errors.jsonl"), seconds=DUR, bank=bank)
    rng = np.random.default_rng(0)
    length = int(1.0 * SR)
    seen_absent = False
    for n in (1, 2, 3, 4, 4, 4):
        mix, refs = mixer.sample(length, rng, n)
        assert mix.shape == (length,) and refs.shape == (4, length)
        np.testing.assert_allclose(refs.sum(0), mix, atol=1e-6)
        active = np.sqrt((refs**2).mean(-1)) > 1e-5
        assert active.sum() <= n and (refs[~active] == 0).all()
        assert active[0]  # the background spans the whole example, so every crop holds it
        seen_absent |= bool(active.sum() < n)
    # a 1 s crop of a 3 s example misses some foreground event sooner or later
    for _ in range(40):
        _, refs = mixer.sample(length, rng, 4)
        seen_absent |= bool((np.sqrt((refs**2).mean(-1)) > 1e-5).sum() < 4)
    assert seen_absent
    # the same generator state gives the same crop (training resumes reproduce their data)
    a = mixer.sample(length, np.random.default_rng(7))
    b = mixer.sample(length, np.random.default_rng(7))
    np.testing.assert_array_equal(a[1], b[1])
    # dry: no bank, no room
    dry = RecipeMixer(load_esc50(lib), 4, 2, SR, errors=ErrorLog(tmp_path / "e2.jsonl"), seconds=DUR)
    mix, refs = dry.sample(length, rng)
    assert 1 <= (np.abs(refs).sum(-1) > 0).sum() <= 2


@pytest.mark.parametrize(("kw", "match"), [
    ({"sample_rate": 100}, "sample_rate must be from 1000 to 768000 Hz"),
    ({"sample_rate": 0}, "sample_rate must be from 1000"),
    ({"sample_rate": 10**6}, "sample_rate must be from 1000"),
    ({"duration": 0.0}, "duration must be a positive"),
    ({"duration": float("nan")}, "duration must be a positive"),
    ({"duration": 1e-5, "sample_rate": 8000}, "duration must be a positive"),
    ({"duration": 100_000.0}, "duration 100000 s is longer than the 600 s limit"),  # used to allocate 16 GiB
    ({"duration": 600.0, "sample_rate": 96_000}, "57600000 samples, more than the limit"),
])
def test_unsupported_rate_or_duration_is_refused_up_front(lib: Path, tmp_path: Path, kw: dict,
                                                          match: str) -> None:
    out = tmp_path / "o"
    with pytest.raises(DatasetError, match=match):
        build_mixtures(lib, out, n=2, **{"sample_rate": SR, "duration": DUR, **kw})
    assert not out.exists()  # no config, no errors.jsonl full of "unsupported rate" lines


def test_mixtures_that_cannot_fit_on_the_disk_are_refused_up_front(lib: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    free = {"bytes": 10**12}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**13, 0, free["bytes"]))
    out = tmp_path / "o"
    kw = dict(seed=0, reverb=False, max_sources=2, sample_rate=SR, duration=1.0)
    # 10**9 mixtures stream one by one, but a mixture and 1.5 sources of 32 kB each need ~80 TB
    with pytest.raises(DatasetError, match=r"1000000000 mixtures of 1 s need about 73.7 TiB but only 931.3 GiB"):
        build_mixtures(lib, out, n=10**9, **kw)
    assert not out.exists()
    build_mixtures(lib, out, n=2, **kw)
    # only what is still to be made counts: a finished run needs nothing more
    free["bytes"] = 1000
    assert len(build_mixtures(lib, out, n=2, **kw)) == 2
    with pytest.raises(DatasetError, match=r"o: 1 mixtures of 1 s need about 79.1 KiB but only 1000.0 B is free"):
        build_mixtures(lib, out, n=3, **kw)
    assert len(load_fuss(out)) == 2
