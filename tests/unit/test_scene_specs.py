"""Every imagine stage backend checks its spec before it loads anything: unknown option names
and bad values are one-line errors that list what is allowed, and a local folder of the wrong
kind is named as such. :func:`check_stage` runs the same checks without building (what
``imagine`` does for every stage before separation); the builders run them first too."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from auralens.errors import AuralensError
from auralens.scene.allm import load_audio_llm
from auralens.scene.caption.base import CAPTIONERS
from auralens.scene.compose.base import COMPOSERS
from auralens.scene.pipeline import ImagineConfig, Stages, check_stage, stage_registry
from auralens.scene.render.base import IMAGE_GENERATORS
from auralens.specs import SpecError

NO_SERVER = "base_url=http://127.0.0.1:9/v1"
BUILDERS = {"captioner": CAPTIONERS.build, "composer": COMPOSERS.build,
            "image": IMAGE_GENERATORS.build, "allm": load_audio_llm}


def _spec(tiny_model, tmp_path: Path, text: str) -> str:
    """``{tiny_chat_lm}`` → that tiny model's folder; ``{empty}`` → an empty folder."""
    def sub(m: re.Match) -> str:
        if m.group(1) == "empty":
            (tmp_path / "empty").mkdir(exist_ok=True)
            return str(tmp_path / "empty")
        return str(tiny_model(m.group(1)))
    return re.sub(r"\{(\w+)\}", sub, text)


BAD = [
    # misspelt option names (were silently ignored)
    ("composer", "hf:{tiny_chat_lm}@max_new_token=5",
     "unknown hf composer option(s) max_new_token; use device, dtype, max_new_tokens"),
    ("composer", "hf:{tiny_chat_lm}@temprature=0.5", "unknown hf composer option(s) temprature"),
    ("composer", f"openai:m@{NO_SERVER},timeuot=2",
     "unknown openai composer option(s) timeuot; use api_key, api_key_env, backoff, base_url"),
    ("captioner", "qwen2-audio:{tiny_qwen2audio}@max_new_token=5",
     "unknown qwen2-audio option(s) max_new_token; use device, dtype, instruction"),
    ("captioner", "{tiny_qwen2audio}@max_new_token=5", "unknown qwen2-audio option(s) max_new_token"),
    ("captioner", "hf-audio-text:{tiny_qwen2audio}@temprature=1",
     "unknown hf-audio-text option(s) temprature"),
    ("captioner", f"openai-audio:m@{NO_SERVER},timeuot=2", "unknown openai-audio option(s) timeuot"),
    ("allm", "qwen2-audio:{tiny_qwen2audio}@max_new_token=5",
     "unknown qwen2-audio option(s) max_new_token; use device, dtype, max_new_tokens"),
    ("image", "diffusers:{tiny_sd3}@stesp=1",
     "unknown diffusers option(s) stesp; use device, dtype, guidance, height"),
    ("image", "none@steps=2", "unknown none image option(s) steps"),
    # values that would fail after the other stages ran, or silently give a wrong result
    ("image", "diffusers:{tiny_sd3}@steps=0", "diffusers option steps must be a whole number ≥ 1, got 0"),
    ("image", "diffusers:{tiny_sd3}@steps=abc", "diffusers option steps must be a whole number ≥ 1, got 'abc'"),
    ("image", "diffusers:{tiny_sd3}@guidance=-1", "diffusers option guidance must be a number in [0, 100]"),
    ("image", "diffusers:{tiny_sd3}@width=0", "diffusers option width must be a whole number ≥ 8"),
    ("image", "diffusers:sd3.5@height=1000", "diffusers option height must be a multiple of 16"),
    ("composer", "hf:{tiny_chat_lm}@max_new_tokens=0", "hf composer option max_new_tokens must be a whole number ≥ 1"),
    ("composer", "hf:{tiny_chat_lm}@temperature=-1", "hf composer option temperature must be a number ≥ 0"),
    ("composer", "hf:{tiny_chat_lm}@dtype=float99", "hf composer option dtype: unknown dtype"),
    # an integer dtype names a torch dtype, but no model runs in it
    ("composer", "hf:{tiny_chat_lm}@dtype=int8", "hf composer option dtype: unknown dtype 'int8'"),
    ("captioner", "qwen2-audio:{tiny_qwen2audio}@dtype=bool", "qwen2-audio option dtype: unknown dtype"),
    ("image", "diffusers:{tiny_sd3}@dtype=int8", "diffusers option dtype: unknown dtype 'int8'"),
    ("image", "diffusers:{tiny_sd3}@max_sequence_length=1000",
     "diffusers option max_sequence_length must be a whole number in [1, 512], got 1000"),
    ("composer", f"openai:m@{NO_SERVER},timeout=0", "openai composer option timeout must be a number of seconds > 0"),
    ("captioner", "qwen2-audio:{tiny_qwen2audio}@top_p=2", "qwen2-audio option top_p must be a number in (0, 1]"),
    ("captioner", "whisper-aac:{tiny_whisper_aac}@num_beams=0", "whisper-aac option num_beams must be a whole number ≥ 1"),
    ("captioner", "classifier:{ast_classifier}@top_k=abc", "classifier option top_k must be a whole number ≥ 1"),
    # local folders of the wrong kind
    ("captioner", "{tiny_chat_lm}", "{tiny_chat_lm}: not an audio-language model (no audio feature extractor)"),
    ("captioner", "qwen2-audio:{tiny_chat_lm}", "{tiny_chat_lm}: not an audio-language model"),
    ("allm", "{tiny_chat_lm}", "{tiny_chat_lm}: not an audio-language model (no audio feature extractor)"),
    ("allm", "hf-audio-text:{tiny_chat_lm}", "{tiny_chat_lm}: not an audio-language model"),
    ("captioner", "whisper-aac:{tiny_qwen2audio}", "{tiny_qwen2audio}: not a Whisper model"),
    ("captioner", "{empty}", "{empty}: not a model folder (no config.json)"),
    ("image", "diffusers:{tiny_chat_lm}", "{tiny_chat_lm}: not a diffusers pipeline (no model_index.json)"),
    ("composer", "hf:{tiny_sd3}", "{tiny_sd3}: not a model folder (no config.json)"),
    ("composer", "hf:{tiny_whisper_aac}", "{tiny_whisper_aac}: tokenizer has no chat template"),
]


@pytest.mark.parametrize("stage, spec, message", BAD)
def test_bad_specs_are_one_line_errors_before_and_at_build(tiny_model, tmp_path, stage, spec,
                                                           message):
    spec = _spec(tiny_model, tmp_path, spec)
    message = _spec(tiny_model, tmp_path, message)
    with pytest.raises(AuralensError) as err:
        check_stage(stage, spec)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AuralensError) as err:  # building it says the same, before loading
        BUILDERS[stage](spec)
    assert message in str(err.value)


def test_option_errors_are_spec_errors(tiny_model):
    with pytest.raises(SpecError):
        check_stage("image", f"diffusers:{tiny_model('tiny_sd3')}@stesp=1")


GOOD = [
    ("separator", None), ("separator", "nmf@n_iter=5"), ("captioner", None),
    ("captioner", "classifier:{ast_classifier}@top_k=2,confidence=false"),
    ("captioner", "clap-zeroshot:{clap_tiny}@top_k=2"),
    ("captioner", "qwen2-audio:{tiny_qwen2audio}@max_new_tokens=3,instruction=hi,seed=1"),
    ("captioner", "{tiny_qwen2audio}"), ("captioner", "{tiny_whisper_aac}@max_new_tokens=3"),
    ("captioner", "whisper-aac:{tiny_whisper_aac}@prefix=the,num_beams=2"),
    ("captioner", f"openai-audio:m@{NO_SERVER},timeout=5,instruction=hi"),
    ("composer", None), ("composer", "template"),
    ("composer", "hf:{tiny_chat_lm}@max_new_tokens=4,temperature=0.7,top_p=0.9,seed=1"),
    ("composer", f"openai:m@{NO_SERVER},timeout=5,retries=0,max_new_tokens=8"),
    ("composer", "qwen2.5"), ("image", None), ("image", "none"),
    ("image", "diffusers:{tiny_sd3}@steps=2,width=32,height=32,guidance=2.0"),
    ("image", "diffusers:{tiny_sd3}@max_sequence_length=512,dtype=bf16"),
    ("image", "diffusers:sd3.5@width=1024,height=768"),
    ("allm", None), ("allm", "{tiny_qwen2audio}@max_new_tokens=3"),
    ("allm", f"openai-audio:m@{NO_SERVER},timeout=5"),
]


#: The modules behind the imagine stages; imported up front so that every name they bind to a
#: loader (``from auralens.scene.llm import from_pretrained``) is replaced below.
BACKEND_MODULES = (
    "auralens.scene.llm", "auralens.scene.allm", "auralens.checkpoint_io",
    "auralens.scene.caption._hf", "auralens.scene.caption.auto",
    "auralens.scene.caption.classifier", "auralens.scene.caption.clap_zeroshot",
    "auralens.scene.caption.hf_audio_text", "auralens.scene.caption.openai_audio",
    "auralens.scene.caption.qwen2audio", "auralens.scene.caption.whisper_aac",
    "auralens.scene.compose.hf_chat", "auralens.scene.compose.openai_api",
    "auralens.scene.compose.template", "auralens.scene.render.diffusers_t2i",
    "auralens.scene.separate.nmf", "auralens.scene.separate.run",
    "auralens.scene.separate.tdcnpp",
)


def forbid_loading(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make every way a stage loads weights or reaches a server raise, and record it: the
    transformers/diffusers ``from_pretrained`` class methods, ``torch.load``, safetensors
    reads, ``urlopen``, and auralens' own loaders and backend builders. Returns the record
    (a check that swallowed the error still leaves its entry there)."""
    import urllib.request

    import diffusers
    import safetensors
    import safetensors.torch
    import torch
    import transformers
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    from auralens.registry import Registry
    from auralens.scene.caption._hf import load_model
    from auralens.scene.llm import from_pretrained

    calls: list[str] = []

    def forbid(name: str):
        def loader(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called while only checking a spec")
        return loader

    for cls in (transformers.PreTrainedModel, _BaseAutoModelClass, transformers.AutoConfig,
                transformers.AutoTokenizer, transformers.AutoProcessor,
                transformers.AutoFeatureExtractor, transformers.PretrainedConfig,
                transformers.PreTrainedTokenizerBase, transformers.ProcessorMixin,
                transformers.FeatureExtractionMixin, diffusers.DiffusionPipeline,
                diffusers.ModelMixin):
        monkeypatch.setattr(cls, "from_pretrained", forbid(f"{cls.__name__}.from_pretrained"))
    monkeypatch.setattr(torch, "load", forbid("torch.load"))
    monkeypatch.setattr(safetensors, "safe_open", forbid("safetensors.safe_open"))
    monkeypatch.setattr(safetensors.torch, "load_file", forbid("safetensors.torch.load_file"))
    monkeypatch.setattr(safetensors.torch, "load", forbid("safetensors.torch.load"))
    monkeypatch.setattr(urllib.request, "urlopen", forbid("urlopen"))
    monkeypatch.setattr(Registry, "build", forbid("Registry.build"))
    # Resolve every registered backend first: check_stage finds a backend's check_spec through
    # the module of the factory it resolves, which must stay the real one, not a stand-in.
    for stage in ("separator", "captioner", "composer", "image"):
        reg = stage_registry(stage)
        for backend in reg.names():
            reg.get(backend)
    for name in BACKEND_MODULES:
        module = importlib.import_module(name)
        for attr, value in list(vars(module).items()):
            own = callable(value) and getattr(value, "__module__", None) == name
            if value is from_pretrained or value is load_model or (
                    own and (attr.startswith(("build", "load_")) or attr == "read_checkpoint")):
                monkeypatch.setattr(module, attr, forbid(f"{name}.{attr}"))
    return calls


def test_the_loading_guard_sees_real_loads(monkeypatch, tiny_model):
    """Building a backend, and the loaders behind it, are caught and recorded."""
    from auralens.checkpoint_io import _read
    from auralens.scene.llm import HFChatModel
    from auralens.scene.render.diffusers_t2i import DiffusersGenerator
    from auralens.scene.separate.tdcnpp import DEFAULT_CHECKPOINT

    chat, sd3 = str(tiny_model("tiny_chat_lm")), str(tiny_model("tiny_sd3"))
    qwen = str(tiny_model("tiny_qwen2audio"))
    calls = forbid_loading(monkeypatch)
    # the guard leaves the checks themselves in place: each stage still refuses a bad option
    for stage, bad in (("captioner", f"qwen2-audio:{qwen}@max_new_token=5"),
                       ("composer", f"hf:{chat}@temprature=1"), ("image", f"diffusers:{sd3}@stesp=1"),
                       ("allm", f"{qwen}@max_new_token=5")):
        with pytest.raises(SpecError, match="unknown"):
            check_stage(stage, bad)
    for load in (lambda: HFChatModel(chat), lambda: DiffusersGenerator(sd3),
                 lambda: _read(DEFAULT_CHECKPOINT, "separator", AuralensError, "cpu"),
                 lambda: COMPOSERS.build("template")):
        with pytest.raises((AssertionError, AuralensError), match="called while only checking a spec"):
            load()  # the checkpoint reader wraps the error in its own
    assert calls == ["auralens.scene.llm.from_pretrained",
                     "auralens.scene.render.diffusers_t2i.from_pretrained",
                     "safetensors.safe_open", "Registry.build"]


@pytest.mark.parametrize("stage, spec", GOOD)
def test_good_specs_pass_without_loading_anything(monkeypatch, tiny_model, tmp_path, stage,
                                                  spec):
    spec = spec if spec is None else _spec(tiny_model, tmp_path, spec)  # tiny models saved first
    calls = forbid_loading(monkeypatch)
    check_stage(stage, spec)
    assert calls == []


def test_stages_check_every_configured_stage_and_build_none(tiny_model):
    chat = tiny_model("tiny_chat_lm")
    stages = Stages(ImagineConfig(separator="nmf", composer=f"hf:{chat}@max_new_tokens=4",
                                  image=f"diffusers:{tiny_model('tiny_sd3')}@steps=1"))
    stages.check()
    assert stages.models() == {}  # weights still load lazily, one stage at a time
    bad = Stages(ImagineConfig(separator="nmf", image=f"diffusers:{chat}"))
    with pytest.raises(AuralensError, match="not a diffusers pipeline"):
        bad.check()
    # in allm mode the separator/captioner are not used, so not checked; the audio LLM is
    allm = Stages(ImagineConfig(mode="allm", captioner="bogus-backend", allm=str(chat)))
    with pytest.raises(AuralensError, match="--mode allm needs an audio LLM.*not an audio-language"):
        allm.check()
