"""Tiny random-weight models for the Imagine stage (captioners, chat LLMs, SD3; CLAP is in eval_models.py, the AST classifier in audio_models.py).

Nothing is downloaded: tokenizers are built from a small word-level vocabulary with the
``tokenizers`` library, models from config objects, and everything is saved with
``save_pretrained`` so tests load it through the same ``from_pretrained(dir)`` path as users.
"""

from __future__ import annotations

from pathlib import Path

#: Words the tiny tokenizers know; generation from random weights picks among them.
_WORDS = (
    "the a of and in on with sound dog barking rain falling bird chirps siren engine hum "
    "clock ticks bell wind footsteps water drops voice street farm forest kitchen beach city "
    "scene image description final answer step reasoning sources place near far left right "
    "describe audio detail caption you are helpful assistant user system filmmaker write"
).split()

_CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>",
             "<|audio_bos|>", "<|audio_eos|>"]


def make_tokenizer(model_max_length: int = 512, chat: bool = True):
    """A word-level ``PreTrainedTokenizerFast`` with chat specials (and a chat template)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_SPECIALS)}
    for word in _WORDS:
        vocab.setdefault(word, len(vocab))
    for ch in "abcdefghijklmnopqrstuvwxyz0123456789.,:;!?'\"-()[]{}<>|/_=#*%":
        vocab.setdefault(ch, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins word pieces with spaces
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="<|im_end|>", model_max_length=model_max_length,
        additional_special_tokens=_SPECIALS[4:],
    )
    if chat:
        fast.chat_template = _CHAT_TEMPLATE
    return fast


def make_tiny_chat_lm(out_dir: Path) -> None:
    """A 2-layer Qwen2 causal LM (hidden 32) with a chat-template tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    tok = make_tokenizer()
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                      eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
                      tie_word_embeddings=True)
    Qwen2ForCausalLM(cfg).eval().save_pretrained(out_dir)
    tok.save_pretrained(out_dir)


def make_tiny_qwen2audio(out_dir: Path) -> None:
    """A Qwen2-Audio with a 1-layer audio encoder (d_model 16) and a 1-layer LM."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioEncoderConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        Qwen2Config,
        WhisperFeatureExtractor,
    )

    torch.manual_seed(0)
    tok = make_tokenizer(model_max_length=4096)
    audio_cfg = Qwen2AudioEncoderConfig(num_mel_bins=128, encoder_layers=1,
                                        encoder_attention_heads=2, encoder_ffn_dim=32,
                                        d_model=16, max_source_positions=1500)
    text_cfg = Qwen2Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                           num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                           max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    cfg = Qwen2AudioConfig(audio_config=audio_cfg, text_config=text_cfg,
                           audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    cfg.pad_token_id = tok.pad_token_id
    cfg.eos_token_id = tok.eos_token_id
    Qwen2AudioForConditionalGeneration(cfg).eval().save_pretrained(out_dir)
    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok,
                        chat_template=_CHAT_TEMPLATE).save_pretrained(out_dir)


def make_tiny_whisper_aac(out_dir: Path) -> None:
    """A 1-layer Whisper encoder-decoder used as an audio captioner."""
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration

    torch.manual_seed(0)
    tok = make_tokenizer(chat=False)
    cfg = WhisperConfig(vocab_size=len(tok), num_mel_bins=80, encoder_layers=1, decoder_layers=1,
                        encoder_attention_heads=2, decoder_attention_heads=2, d_model=16,
                        encoder_ffn_dim=32, decoder_ffn_dim=32, max_source_positions=1500,
                        max_target_positions=64, pad_token_id=tok.pad_token_id,
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                        decoder_start_token_id=tok.bos_token_id, begin_suppress_tokens=None,
                        suppress_tokens=None)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config.decoder_start_token_id = tok.bos_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80, sampling_rate=16000).save_pretrained(out_dir)




def make_tiny_sd3(out_dir: Path) -> None:
    """A tiny StableDiffusion3Pipeline: 1-layer SD3 transformer, 2 CLIP + T5 text encoders."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import (
        CLIPTextConfig,
        CLIPTextModelWithProjection,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=32,
        pooled_projection_dim=64, out_channels=4)
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3,
                        block_out_channels=(4,), layers_per_block=1, latent_channels=4,
                        norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035,
                        down_block_types=("DownEncoderBlock2D",),
                        up_block_types=("UpDecoderBlock2D",))
    tok = make_tokenizer(model_max_length=77, chat=False)
    clip_kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=37,
                   num_attention_heads=4, num_hidden_layers=2, projection_dim=32,
                   max_position_embeddings=77, pad_token_id=tok.pad_token_id,
                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                   hidden_act="gelu")
    enc1 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_kw))
    enc2 = CLIPTextModelWithProjection(CLIPTextConfig(**clip_kw))
    enc3 = T5EncoderModel(T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=37,
                                   num_layers=1, num_heads=4, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
        text_encoder=enc1, tokenizer=tok, text_encoder_2=enc2, tokenizer_2=tok,
        text_encoder_3=enc3, tokenizer_3=tok)
    pipe.save_pretrained(out_dir)
