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
