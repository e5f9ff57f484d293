"""Damaged or wrong-kind model folders given to the CLIP/CLAP scorers, the captioners, the
composer and the extractors fail in one line naming the folder, before any weights load,
instead of loading into nonsense (one tokenizer id for every text, a random classifier
head) or ending in a library traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from auralens.encoders.base import EXTRACTORS
from auralens.errors import (
    AuralensError,
    CheckpointMismatchError,
    MissingModelDirError,
    ModelUnavailableError,
)
from auralens.evaluate.clapscore import ClapScorer, clap_score
from auralens.evaluate.clipscore import ClipScorer
from auralens.evaluate.fad import MetricInputError
from auralens.scene.caption.base import CAPTIONERS
from auralens.scene.compose.base import COMPOSERS
from auralens.scene.pipeline import check_stage

NO_TOKENIZER = "no tokenizer (tokenizer.json / vocab files missing)"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _refusals(*calls) -> list[str]:
    """The one-line message of each call, every one of which must raise an AuralensError."""
    messages = []
    for call in calls:
        with pytest.raises(AuralensError) as err:
            call()
        messages.append(_one_line(err))
    return messages


def _copy(src: Path, tmp_path: Path, name: str, drop: tuple[str, ...] = ()) -> Path:
    """A copy of a tiny model folder without the files whose names start with ``drop``."""
    dst = tmp_path / name
    shutil.copytree(src, dst, ignore=lambda _d, names: [n for n in names if n.startswith(drop)])
    return dst


def _no_tokenizer(src: Path, tmp_path: Path, name: str) -> Path:
    out = _copy(src, tmp_path, name, drop=("tokenizer", "vocab", "merges", "special_tokens"))
    assert not any(p.name.startswith("tokenizer") for p in out.iterdir())
    return out


def _edit_config(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


# ---------------------------------------------------------------- 1. no tokenizer files


@pytest.mark.parametrize("factory, scorer", [("clip_tiny", ClipScorer), ("clap_tiny", ClapScorer)])
def test_scorer_refuses_a_folder_without_tokenizer(tiny_model, tmp_path, factory, scorer):
    folder = _no_tokenizer(tiny_model(factory), tmp_path, factory)
    with pytest.raises(ModelUnavailableError) as err:
        scorer(folder)
    assert _one_line(err) == f"{folder}: {NO_TOKENIZER}"


def test_clap_zeroshot_refuses_a_folder_without_tokenizer(tiny_model, tmp_path):
    folder = _no_tokenizer(tiny_model("clap_tiny"), tmp_path, "clap")
    for message in _refusals(lambda: check_stage("captioner", f"clap-zeroshot:{folder}"),
                             lambda: CAPTIONERS.build(f"clap-zeroshot:{folder}")):
        assert message == f"{folder}: {NO_TOKENIZER}"
    from auralens.scene.caption.clap_zeroshot import ClapZeroShotCaptioner

    with pytest.raises(AuralensError, match="no tokenizer"):  # the class itself checks too
        ClapZeroShotCaptioner(str(folder))


# ---------------------------------------------------------------- 2. classifier without a head


@pytest.mark.parametrize("factory, arch", [("ast", "ASTModel"), ("hubert", "HubertModel")])
def test_classifier_refuses_a_bare_encoder(tiny_model, factory, arch):
    folder = tiny_model(factory)
    for message in _refusals(lambda: check_stage("captioner", f"classifier:{folder}"),
                             lambda: CAPTIONERS.build(f"classifier:{folder}")):
        assert message.startswith(
            f"{folder}: not an audio classifier (config.json architectures: {arch}, "
            "no classification head)")


def test_classifier_refuses_generic_label_names(tiny_model, tmp_path):
    folder = _copy(tiny_model("ast_classifier"), tmp_path, "generic")
    _edit_config(folder, id2label={"0": "LABEL_0", "1": "LABEL_1"},
                 label2id={"LABEL_0": 0, "LABEL_1": 1})
    with pytest.raises(AuralensError) as err:
        check_stage("captioner", f"classifier:{folder}")
    assert _one_line(err).startswith(
        f"{folder}: not an audio classifier (config.json has only generic class names: "
        "LABEL_0, LABEL_1)")
    _edit_config(folder, id2label={}, label2id={})
    with pytest.raises(AuralensError) as err:
        CAPTIONERS.build(f"classifier:{folder}")
    assert _one_line(err).startswith(
        f"{folder}: not an audio classifier (config.json has no id2label class names)")


def test_classifier_refuses_a_checkpoint_without_head_weights(tiny_model, tmp_path):
    # the config names a classifier with real labels, the weights are a bare ASTModel's
    folder = _copy(tiny_model("ast"), tmp_path, "headless")
    _edit_config(folder, architectures=["ASTForAudioClassification"],
                 id2label={"0": "dog", "1": "rain"}, label2id={"dog": 0, "rain": 1})
    check_stage("captioner", f"classifier:{folder}")  # the config alone looks right
    with pytest.raises(AuralensError) as err:
        CAPTIONERS.build(f"classifier:{folder}")
    assert _one_line(err).startswith(f"{folder}: no classification head in the checkpoint (classifier.")


def test_classifier_with_a_head_still_captions(tiny_model):
    cap = CAPTIONERS.build(f"classifier:{tiny_model('ast_classifier')}")
    assert cap.labels == ["dog", "rain", "siren", "church_bells"]
    wave = (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32)
    assert cap.describe(wave).label in {"dog", "rain", "siren", "church bells"}



def test_classifier_spec_check_parses_config_once(tiny_model, monkeypatch):
    from auralens.scene import llm
    from auralens.scene.caption import classifier

    parsed: list[str] = []
    read = llm.read_json_file

    def counted(path: Path) -> dict:
        parsed.append(Path(path).name)
        return read(path)

    monkeypatch.setattr(llm, "read_json_file", counted)
    monkeypatch.setattr(classifier, "read_json_file", counted)
    check_stage("captioner", f"classifier:{tiny_model('ast_classifier')}")
    assert parsed.count("config.json") == 1, parsed


# ---------------------------------------------------------------- 3. raw library errors


def test_scorer_with_truncated_weights_is_one_line(tiny_model, tmp_path):
    folder = _copy(tiny_model("clip_tiny"), tmp_path, "trunc")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelUnavailableError) as err:
        ClipScorer(folder)
    assert _one_line(err).startswith(f"{folder}: cannot load as CLIPModel: corrupt weights file")


def test_clap_score_with_an_audio_encoder_folder_names_the_kind(tiny_model):
    hubert = tiny_model("hubert")
    wave = np.full(16000, 0.1, np.float32)
    with pytest.raises(CheckpointMismatchError) as err:
        clap_score([wave], ["rain"], 16000, model=hubert)
    assert _one_line(err) == (f"{hubert}: not a CLAP model (config.json model_type 'hubert'); "
                              "CLAPScore needs a ClapModel folder")


# ---------------------------------------------------------------- 4. wrong kind, spec prefixes


def test_clip_scorer_given_a_clap_folder_names_the_kind(tiny_model):
    clap = tiny_model("clap_tiny")
    with pytest.raises(CheckpointMismatchError) as err:
        ClipScorer(clap)
    msg = _one_line(err)
    assert msg == (f"{clap}: not a CLIP model (config.json model_type 'clap'); CLIPScore needs "
                   "a CLIPModel folder")
    assert "not available offline" not in msg


def test_scorers_take_their_own_spec_prefix(tiny_model):
    clap, clip = tiny_model("clap_tiny"), tiny_model("clip_tiny")
    rng = np.random.default_rng(0)
    waves = [0.1 * rng.standard_normal(16000).astype(np.float32) for _ in range(2)]
    texts = ["a dog barks", "rain"]
    np.testing.assert_allclose(clap_score(waves, texts, 16000, model=f"clap:{clap}"),
                               clap_score(waves, texts, 16000, model=clap), atol=1e-6)
    scorer = ClipScorer(f"clip:{clip}")
    assert scorer.model_id == str(clip) and scorer.name == f"clip:{clip}"
    with pytest.raises(AuralensError) as err:
        ClapScorer(f"clip:{clip}")
    assert _one_line(err).startswith(f"clip:{clip}: not a CLAP model spec; give a hub id")


# ---------------------------------------------------------------- 5. composer folders


def test_composer_refuses_a_chat_model_without_tokenizer_up_front(tiny_model, tmp_path):
    from auralens.scene.llm import HFChatModel

    folder = _no_tokenizer(tiny_model("tiny_chat_lm"), tmp_path, "chat")
    for message in _refusals(lambda: check_stage("composer", f"hf:{folder}"),
                             lambda: COMPOSERS.build(f"hf:{folder}"), lambda: HFChatModel(str(folder))):
        assert message == f"{folder}: {NO_TOKENIZER}"


@pytest.mark.parametrize("factory, kind", [("dac", "dac DacModel"), ("hubert", "hubert HubertModel")])
def test_composer_given_a_codec_or_encoder_says_not_a_language_model(tiny_model, factory, kind):
    folder = tiny_model(factory)
    for message in _refusals(lambda: check_stage("composer", f"hf:{folder}"),
                             lambda: COMPOSERS.build(f"hf:{folder}")):
        assert message == (f"{folder}: not a causal language model (config.json: {kind}); "
                           "hf composer needs a text chat LLM")


# ---------------------------------------------------------------- 6. CLIP image inputs


@pytest.fixture(scope="module")
def clip_scorer(tiny_model):
    return ClipScorer(tiny_model("clip_tiny"))


def test_clip_takes_float_images_in_unit_range(clip_scorer):
    rgb = np.random.default_rng(2).random((32, 32, 3))
    as_uint8 = np.round(rgb * 255).astype(np.uint8)
    np.testing.assert_allclose(clip_scorer.cosine(["a"], [rgb]),
                               clip_scorer.cosine(["a"], [as_uint8]), atol=1e-6)


@pytest.mark.parametrize("image, message", [
    (None, "image 1: expected a PIL image, an [H, W, 3] array or an image file path, got NoneType"),
    (np.zeros((0, 0, 3), np.uint8), "image 1: empty image (shape (0, 0, 3))"),
    (np.full((8, 8, 3), 2.0), "image 1: float image values must lie in [0, 1], got 2..2"),
    (np.zeros((8, 8, 2), np.uint8), "image 1: expected an [H, W, 3] (or [H, W]) image array"),
])
def test_clip_refuses_bad_images_in_one_line(clip_scorer, image, message):
    good = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(MetricInputError) as err:
        clip_scorer.score(["a", "b"], [good, image])
    assert _one_line(err).startswith(message)


def test_clip_refuses_an_empty_pil_image(clip_scorer):
    from PIL import Image

    with pytest.raises(MetricInputError, match=r"image 0: empty image \(0×0 pixels\)"):
        clip_scorer.cosine(["a"], [Image.new("RGB", (0, 0))])


# ---------------------------------------------------------------- 7. a folder that is gone


@pytest.mark.parametrize("prefix", ["", "hubert:", "clap:", "hf:"])
def test_extractor_on_a_missing_folder_says_it_does_not_exist(tmp_path, prefix):
    gone = tmp_path / "gone"
    with pytest.raises(MissingModelDirError) as err:
        EXTRACTORS.build(f"{prefix}{gone}")
    assert _one_line(err) == f"{gone}: directory does not exist"


# ---------------------------------------------------------------- 8. CLAP without processor config


def test_clap_without_processor_config_names_the_missing_file(tiny_model, tmp_path):
    folder = _copy(tiny_model("clap_tiny"), tmp_path, "noproc", drop=("processor_config",
                                                                      "preprocessor_config"))
    expected = f"{folder}: no preprocessor_config.json / processor_config.json"
    for load in (lambda: EXTRACTORS.build(f"clap:{folder}"), lambda: ClapScorer(folder)):
        with pytest.raises(ModelUnavailableError) as err:
            load()
        assert _one_line(err) == expected


# ---------------------------------------------------------------- 9. count mismatches


def test_count_mismatch_is_an_auralens_error_and_a_value_error(tiny_model, clip_scorer):
    clap = ClapScorer(tiny_model("clap_tiny"))
    with pytest.raises(MetricInputError, match="2 audio clips but 1 texts") as err:
        clap.score([np.zeros(100, np.float32)] * 2, ["a"], 16000)
    assert isinstance(err.value, AuralensError) and isinstance(err.value, ValueError)
    with pytest.raises(MetricInputError, match="2 texts but 1 images") as err:
        clip_scorer.cosine(["a", "b"], [np.zeros((8, 8, 3), np.uint8)])
    assert isinstance(err.value, ValueError)
