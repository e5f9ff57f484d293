"""API keys never reach the records a run leaves: ``run.json`` (argv and config) and the
settings of ``imagine batch`` results lines hold ``api_key=***``, and a new key does not
count as other settings."""

from __future__ import annotations

import json
import sys

import pytest
from launch import chat_server

from auralens.io import mask_secrets, read_json, write_run_json
from auralens.scene.pipeline import ImagineConfig, imagine, imagine_batch

SECRET = "sk-live-0123456789"


def test_mask_secrets_masks_keys_in_specs_arguments_and_mappings():
    record = {"argv": ["auralens", "imagine", "--composer",
                       f"openai:m@base_url=http://h:1/v1,api_key={SECRET},timeout=5",
                       f"--set=composer.params.api_key={SECRET}"],
              "config": {"composer": {"backend": "openai:m", "params": {"api_key": SECRET,
                                                                       "api_key_env": "MY_KEY"}},
                         "allm": [f"openai-audio:m@api_key={SECRET}"]},
              "seed": 0, "empty": {"api_key": None}}
    masked = mask_secrets(record)
    assert SECRET not in json.dumps(masked)
    assert masked["argv"][3] == "openai:m@base_url=http://h:1/v1,api_key=***,timeout=5"
    assert masked["argv"][4] == "--set=composer.params.api_key=***"
    assert masked["config"]["composer"]["params"] == {"api_key": "***", "api_key_env": "MY_KEY"}
    assert masked["config"]["allm"] == ["openai-audio:m@api_key=***"]
    assert masked["seed"] == 0 and masked["empty"] == {"api_key": None}


def test_run_json_holds_no_api_key(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["auralens", "imagine", "x.wav", "--composer",
                                      f"openai:m@api_key={SECRET}"])
    path = write_run_json(tmp_path, command="imagine --mode pipeline",
                          config={"composer": f"openai:m@api_key={SECRET}"},
                          extra={"settings": {"api_key": SECRET}})
    text = path.read_text()
    assert SECRET not in text
    data = json.loads(text)
    assert data["argv"][-1] == "openai:m@api_key=***"
    assert data["config"]["composer"] == "openai:m@api_key=***"


@pytest.fixture
def chat_url():
    with chat_server(lambda body: "Final description: A dog barks in a park.") as url:
        yield url


def test_imagine_records_no_api_key(chat_url, noise, tmp_path):
    from auralens.audio import write

    clip = write(tmp_path / "mix.wav", noise, 16000)
    cfg = {"separator": "nmf@n_iter=5",
           "captioner": f"openai-audio:m@base_url={chat_url},retries=0,api_key={SECRET}",
           "composer": f"openai:m@base_url={chat_url},retries=0,api_key={SECRET}",
           "report": False}
    res = imagine(clip, tmp_path / "one", cfg)
    assert res.description == "A dog barks in a park."
    run = read_json(tmp_path / "one" / "run.json")
    assert SECRET not in json.dumps(run)
    assert run["config"]["composer"].endswith("retries=0,api_key=***")

    listing = tmp_path / "clips.txt"
    listing.write_text(f"{clip}\n")
    lines = imagine_batch(listing, tmp_path / "batch", cfg)
    assert len(lines) == 1
    for name in ("results.jsonl", "run.json"):
        assert SECRET not in (tmp_path / "batch" / name).read_text()
    # another key is not another setting: the results resume
    other = {**cfg, "composer": cfg["composer"].replace(SECRET, "sk-other")}
    assert (ImagineConfig.from_dict(other).result_settings()
            == ImagineConfig.from_dict(cfg).result_settings())
    assert len(imagine_batch(listing, tmp_path / "batch", other)) == 1


def test_rows_stamped_before_keys_were_masked_still_match():
    """Result rows whose settings hold the key in plain text (written before masking) are the
    same settings: they are accepted and stamped with the masked fingerprint."""
    from auralens.config import check_fingerprints, fingerprint

    plain = {"composer": f"openai:m@api_key={SECRET},base_url=http://h/v1"}
    masked = mask_secrets(plain)
    key = fingerprint(masked)
    rows = [{"id": "a", "fingerprint": fingerprint(plain), "settings": plain, "setting": plain}]

    def refuse(what):
        raise AssertionError(what)

    stamped = check_fingerprints(rows, key, masked, legacy_settings=lambda r: None,
                                 refuse=refuse, different=str)
    assert stamped == rows and rows[0]["fingerprint"] == key and SECRET not in json.dumps(rows)
    other = [{"id": "b", "fingerprint": "0" * 16, "settings": {"composer": "openai:other"}}]
    with pytest.raises(AssertionError):
        check_fingerprints(other, key, masked, legacy_settings=lambda r: None,
                           refuse=refuse, different=str)


def test_experiment_results_hold_no_api_key(tmp_path):
    from auralens.cli import main
    from auralens.experiments.fussmanifest import pairs_from_mixer
    from auralens.experiments.runner import run_experiment

    assert main(["data", "synth", "--out", str(tmp_path / "lib"), "--clips-per-class", "1",
                 "--sample-rate", "16000", "--duration", "1", "--classes", "siren,rain"]) == 0
    assert main(["data", "mix", str(tmp_path / "lib"), "--out", str(tmp_path / "mix"), "--n", "1",
                 "--duration", "1", "--no-reverb", "--max-sources", "2", "--seed", "0"]) == 0
    pairs_from_mixer(tmp_path / "mix", tmp_path / "pairs.jsonl")
    with chat_server(lambda body: "A siren wails in the rain.") as url:
        def cfg(secret):
            return {"name": "t", "kind": "pipeline", "_source": "t.yaml",
                    "data": {"source": "pairs", "path": str(tmp_path / "pairs.jsonl")},
                    "methods": [{"name": "m", "type": "pipeline", "separator": "reference",
                                 "captioner": "classifier",
                                 "composer": f"openai:m@base_url={url},api_key={secret}"}],
                    "judge": {"spec": "keyword", "metrics": ["count"]}, "clap": {"model": None}}
        assert run_experiment(cfg(SECRET), tmp_path / "out")["new"] == 1
        # another key is not another setting: the row is reused
        assert run_experiment(cfg("sk-other"), tmp_path / "out")["new"] == 0
    for name in ("results.jsonl", "run.json"):
        text = (tmp_path / "out" / name).read_text()
        assert SECRET not in text and "api_key=***" in text, name


def test_mask_secrets_keeps_what_follows_a_key_in_a_query_and_masks_other_spellings():
    """Two settings that differ after the key must not mask to the same text."""
    one = mask_secrets("openai:m@base_url=http://p/v1?api_key=K1&deployment=a,timeout=3")
    two = mask_secrets("openai:m@base_url=http://p/v1?api_key=K2&deployment=b,timeout=3")
    assert one == "openai:m@base_url=http://p/v1?api_key=***&deployment=a,timeout=3" and one != two
    got = mask_secrets({"x-api-key": "s", "apikey": "t", "API-Key": "u", "api_key_env": "VAR"})
    assert got == {"x-api-key": "***", "apikey": "***", "API-Key": "***", "api_key_env": "VAR"}


def test_a_rerun_with_nothing_to_load_keeps_the_models_recorded(tmp_path):
    """A resume that loads no model still says which models made the outputs."""
    cfg = {"separator": "tdcnpp", "n": 2}
    write_run_json(tmp_path, command="imagine batch", config=cfg,
                   models={"separator": {"name": "tdcnpp", "revision": "abc"}})
    write_run_json(tmp_path, command="imagine batch", config=cfg, models={})
    assert read_json(tmp_path / "run.json")["models"] == {"separator": {"name": "tdcnpp",
                                                                       "revision": "abc"}}
    # other settings: the earlier models describe other outputs and are not carried over
    write_run_json(tmp_path, command="imagine batch", config={**cfg, "n": 3}, models={})
    assert read_json(tmp_path / "run.json")["models"] == {}
