"""Tiny random-weight CLIP and CLAP models for the evaluation metrics' tests.

Each factory builds a model from a small config, a byte-level BPE tokenizer whose vocabulary
is just the 256 byte symbols (so any English text tokenizes without downloads) and the slow
feature/image processor, then saves everything with ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path


def _byte_vocab(specials: list[str], end_of_word: bool = False) -> dict[str, int]:
    from tokenizers import pre_tokenizers

    vocab: dict[str, int] = {}
    for tok in specials:
        vocab[tok] = len(vocab)
    for sym in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[sym] = len(vocab)
        if end_of_word:  # CLIP's BPE marks word ends with "</w>"
            vocab[sym + "</w>"] = len(vocab)
    return vocab


def make_clip_tiny(out_dir: Path) -> None:
    """A 2-layer CLIP (text 32-d, vision 32-d on 32x32 images, projection 16)."""
    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessorPil,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
    )

    torch.manual_seed(0)
    vocab = _byte_vocab(["<|startoftext|>", "<|endoftext|>"], end_of_word=True)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    config = CLIPConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 77, "bos_token_id": 0, "eos_token_id": 1,
                     "pad_token_id": 1},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 32},
                                            crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)


def make_clap_tiny(out_dir: Path) -> None:
    """A tiny unfused CLAP (HTSAT audio branch + RoBERTa text branch, projection 16)."""
    import torch
    from transformers import (
        ClapConfig,
        ClapFeatureExtractor,
        ClapModel,
        ClapProcessor,
        RobertaTokenizer,
    )

    torch.manual_seed(0)
    vocab = _byte_vocab(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = RobertaTokenizer(vocab=vocab, merges=[], model_max_length=512)
    config = ClapConfig(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 514, "pad_token_id": 1, "bos_token_id": 0,
                     "eos_token_id": 2, "projection_dim": 16},
        audio_config={"spec_size": 64, "patch_size": 4, "patch_stride": 4, "num_mel_bins": 16,
                      "patch_embeds_hidden_size": 16, "depths": [1, 1], "num_attention_heads": [2, 2],
                      "window_size": 4, "hidden_size": 32, "projection_dim": 16,
                      "enable_fusion": False},
        projection_dim=16,
    )
    model = ClapModel(config).eval()
    feature_extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=48000, hop_length=480,
                                             max_length_s=2, fft_window_size=1024,
                                             truncation="rand_trunc", padding="repeatpad")
    processor = ClapProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
