"""Tiny random-weight audio encoders and codecs for tests (each saves in well under 1 s).

Every factory builds a model from a config object with small widths and two layers, seeds
torch so the weights are reproducible, and writes it with ``save_pretrained`` (plus the
feature extractor config where the real checkpoints ship one).
"""

from __future__ import annotations

from pathlib import Path


def _seed() -> None:
    import torch

    torch.manual_seed(0)


def _ast_config(**extra: object):
    from transformers import ASTConfig

    # 64 mels × 128 frames (1.28 s) → 5 freq × 12 time patches = 60 patches.
    return ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, num_mel_bins=64, max_length=128, **extra)


def _ast_fe(out_dir: Path) -> None:
    from transformers import ASTFeatureExtractor

    ASTFeatureExtractor(num_mel_bins=64, max_length=128).save_pretrained(out_dir)


def make_ast(out_dir: Path) -> None:
    """A bare ``ASTModel`` (hidden 32, 2 blocks, 64 mels × 128 frames)."""
    from transformers import ASTModel

    _seed()
    ASTModel(_ast_config()).save_pretrained(out_dir)
    _ast_fe(out_dir)


def make_ast_classifier(out_dir: Path) -> None:
    """An ``ASTForAudioClassification`` over four ESC-50-style labels (same trunk as
    :func:`make_ast`): the AST encoder tests and the ``classifier:`` captioner use it."""
    from transformers import ASTForAudioClassification

    _seed()
    labels = ["dog", "rain", "siren", "church_bells"]
    cfg = _ast_config(id2label=dict(enumerate(labels)),
                      label2id={n: i for i, n in enumerate(labels)})
    ASTForAudioClassification(cfg).save_pretrained(out_dir)
    _ast_fe(out_dir)


def _ssl_kwargs() -> dict:
    # The real conv stack (stride 320) with narrow channels: 1 s at 16 kHz → 49 frames.
    return dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def _ssl_fe(out_dir: Path, layer_norm: bool) -> None:
    from transformers import Wav2Vec2FeatureExtractor

    Wav2Vec2FeatureExtractor(do_normalize=layer_norm,
                             return_attention_mask=layer_norm).save_pretrained(out_dir)


def make_hubert(out_dir: Path) -> None:
    """A ``HubertModel`` with a group-norm feature encoder (like hubert-base)."""
    from transformers import HubertConfig, HubertModel

    _seed()
    HubertModel(HubertConfig(**_ssl_kwargs())).save_pretrained(out_dir)
    _ssl_fe(out_dir, layer_norm=False)


def make_wav2vec2(out_dir: Path) -> None:
    """A ``Wav2Vec2Model`` with a layer-norm feature encoder (uses attention masks)."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    _seed()
    cfg = Wav2Vec2Config(feat_extract_norm="layer", do_stable_layer_norm=True, **_ssl_kwargs())
    Wav2Vec2Model(cfg).save_pretrained(out_dir)
    _ssl_fe(out_dir, layer_norm=True)


def make_wavlm(out_dir: Path) -> None:
    """A ``WavLMModel`` (relative position buckets kept small)."""
    from transformers import WavLMConfig, WavLMModel

    _seed()
    cfg = WavLMConfig(num_buckets=32, max_bucket_distance=100, **_ssl_kwargs())
    WavLMModel(cfg).save_pretrained(out_dir)
    _ssl_fe(out_dir, layer_norm=False)


def make_dac(out_dir: Path) -> None:
    """A ``DacModel`` at 16 kHz with hop 8 (ratios 2×4), latent width 32, 2 codebooks."""
    from transformers import DacConfig, DacModel

    _seed()
    cfg = DacConfig(encoder_hidden_size=8, downsampling_ratios=[2, 4], decoder_hidden_size=16,
                    n_codebooks=2, codebook_size=16, codebook_dim=4, sampling_rate=16000)
    DacModel(cfg).save_pretrained(out_dir)


def make_encodec(out_dir: Path) -> None:
    """An ``EncodecModel`` at 16 kHz, mono, hop 8 (ratios 4×2), latent width 16."""
    from transformers import EncodecConfig, EncodecModel

    _seed()
    cfg = EncodecConfig(sampling_rate=16000, hidden_size=16, num_filters=4,
                        upsampling_ratios=[4, 2], codebook_size=16, num_lstm_layers=1,
                        target_bandwidths=[1.5])
    EncodecModel(cfg).save_pretrained(out_dir)


def make_oobleck(out_dir: Path) -> None:
    """A diffusers ``AutoencoderOobleck``: stereo 16 kHz, hop 8 (ratios 2×4), 8 latent channels."""
    from diffusers import AutoencoderOobleck

    _seed()
    AutoencoderOobleck(encoder_hidden_size=16, downsampling_ratios=[2, 4], channel_multiples=[1, 2],
                       decoder_channels=8, decoder_input_channels=8, audio_channels=2,
                       sampling_rate=16000).save_pretrained(out_dir)


def make_whisper(out_dir: Path) -> None:
    """A ``WhisperModel`` with a 2 s window (100 encoder positions), d_model 32, 2 blocks."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    _seed()
    cfg = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, decoder_layers=1,
                        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        num_mel_bins=80, max_source_positions=100, max_target_positions=16,
                        vocab_size=64, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                        decoder_start_token_id=1, begin_suppress_tokens=None,
                        suppress_tokens=None)
    WhisperModel(cfg).save_pretrained(out_dir)
    WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(out_dir)
