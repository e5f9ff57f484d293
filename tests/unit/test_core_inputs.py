"""Bad input to the core helpers: cache entries, specs, option values, audio, merges, shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auralens.cache import ArrayCache, make_key


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5])


def test_truncated_cache_entry_is_not_present_and_is_dropped(tmp_path):
    cache = ArrayCache(tmp_path, "emb")
    key = "ab" * 32
    cache.put(key, {"emb": np.zeros((3, 4), np.float32)})
    assert key in cache and cache.shapes(key) == {"emb": [3, 4]}
    _truncate(cache.path_for(key))
    assert key not in cache
    assert not cache.path_for(key).exists()
    assert cache.shapes(key) is None


def test_long_arrays_differing_in_the_middle_get_different_keys():
    a = np.arange(2000)
    b = a.copy()
    b[1000] = -1
    assert make_key("h", weights=a) != make_key("h", weights=b)
    assert make_key("h", weights=a) == make_key("h", weights=a.copy())


def test_prepare_recomputes_a_truncated_cache_entry(tmp_path):
    import soundfile as sf

    from auralens.codecs.base import CODECS
    from auralens.encoders.base import Extractor
    from auralens.io import read_jsonl
    from auralens.sonify.prepare import prepare

    class Frames(Extractor):
        name, layer, sample_rate, frame_rate, dim = "frames", "features", 16000, 50.0, 4

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return np.ones((len(wave) // 320 + 1, 4), np.float32)

    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        sf.write(data / f"clip{i}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)

    def run(out: str):
        return prepare(data, Frames(), CODECS.build("mel"), None, tmp_path / out,
                       duration=1.0, cache_dir=tmp_path / "cache")

    run("first")
    rec = read_jsonl(tmp_path / "first" / "index.jsonl")[0]
    cache = ArrayCache(tmp_path / "cache", "embeddings")
    _truncate(cache.path_for(rec["emb_key"]))
    res = run("second")
    assert (res.n_ok, res.computed_embeddings, res.computed_latents) == (2, 1, 0)
    assert cache.get(rec["emb_key"])["embedding"].shape[1] == 4


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_kind_prefixed_existing_path_with_at_is_kept_whole(in_tmp):
    from auralens.specs import parse_spec

    preset = in_tmp / "co@v1" / "presets" / "classifier-synth"
    preset.mkdir(parents=True)
    spec = parse_spec(f"classifier:{preset}")
    assert (spec.kind, spec.id, spec.params) == ("classifier", str(preset), {})
    (in_tmp / "model@v2").mkdir()
    spec = parse_spec("hf:./model@v2@layer=3")
    assert (spec.kind, spec.id, spec.params) == ("hf", "./model@v2", {"layer": 3})


def test_existing_folder_that_looks_like_options_is_a_path(in_tmp):
    from auralens.specs import parse_spec

    folder = in_tmp / "m@x=1"
    folder.mkdir()
    spec = parse_spec(str(folder))
    assert (spec.kind, spec.id, spec.params) == ("path", str(folder), {})
    spec = parse_spec(f"hf:{folder}@layer=3")
    assert (spec.kind, spec.id, spec.params) == ("hf", str(folder), {"layer": 3})


@pytest.mark.parametrize("text", ["hf:/no/such/m@x=1@layer=3", "hf:org/m@revision=main@layer=2"])
def test_second_options_part_is_refused(text):
    from auralens.specs import SpecError, parse_spec

    with pytest.raises(SpecError, match="second '@' options part '@layer="):
        parse_spec(text)


def test_spec_with_nothing_before_the_options_is_refused():
    from auralens.specs import SpecError, parse_spec

    with pytest.raises(SpecError, match="names no model"):
        parse_spec("@layer=3")


@pytest.mark.parametrize("text, value", [("1__0", "1__0"), ("1_", "1_"), ("1_000", 1000)])
def test_underscored_numbers_follow_int(text, value):
    from auralens.config import apply_overrides
    from auralens.specs import parse_spec

    assert parse_spec(f"nmf@n_sources={text}").params == {"n_sources": value}
    assert apply_overrides({}, [f"activity.threshold={text}"]) == {"activity": {"threshold": value}}


def test_override_key_parts_are_stripped_and_quotes_removed():
    from auralens.config import apply_overrides

    assert apply_overrides({}, ["a. b=1"]) == {"a": {"b": 1}}
    assert apply_overrides({}, ['x="a=b"', "y='0123'", 'z="1"']) == {"x": "a=b", "y": "0123", "z": "1"}


def test_quoted_override_values_are_literal_text():
    """No escape processing: a Windows path keeps its backslashes; a value holding its own
    quote character is kept as written."""
    from auralens.config import apply_overrides

    got = apply_overrides({}, ['a="D:\\audio\\new"', "b='C:\\x'", 'c="a" and "b"', "d=''"])
    assert got == {"a": "D:\\audio\\new", "b": "C:\\x", "c": '"a" and "b"', "d": ""}
    # quotes inside as well: a YAML quoted string
    assert apply_overrides({}, ['e="say \\"hi\\""']) == {"e": 'say "hi"'}


def test_invalid_yaml_names_line_column_and_problem(tmp_path):
    from auralens.config import ConfigError, load_yaml

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1\n", encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_yaml(bad)
    msg = str(exc.value)
    assert msg.startswith(f"{bad}: invalid YAML (line 3, column 1: expected ',' or ']'") and "\n" not in msg
    assert "while parsing a flow sequence from line 2, column 4" in msg


def test_binary_config_names_the_file(tmp_path, capsys):
    from auralens.cli import main

    binary = tmp_path / "config.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x01 not text")
    assert main(["experiment", "run", str(binary)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {binary}: not a YAML text file (not UTF-8: invalid start byte at byte 0)\n"


def test_is_number_refuses_an_int_beyond_float_range():
    from auralens.checks import is_number

    assert is_number(10**400) is False and is_number(10**300) is True
