"""Tiny, random-weight models built from config (no download), for tests and code-path benches."""
from __future__ import annotations

import json
from pathlib import Path


def tiny_tokenizer_dir(path: Path) -> Path:
    """A CLIP tokenizer with a small real BPE vocabulary, written offline and loadable with
    ``CLIPTokenizer.from_pretrained(path)`` (transformers 5 builds a 3-token tokenizer from
    vocab_file/merges_file arguments, so the folder route is used)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for ch in letters + ",.":
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    merges = ["#version: 0.2", "t h", "th e</w>", "p h", "o t", "o</w> f</w>"]
    for m in merges[1:]:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("\n".join(merges) + "\n")
    (path / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "!"}))
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(path))
    assert len(tok) > 10, f"the offline tokenizer came out with {len(tok)} tokens"
    return path


def save_tiny_controlnet_pipeline(root: Path) -> tuple[Path, Path]:
    """Save a ~1M-parameter SD + ControlNet pipeline; returns (base folder, controlnet folder)."""
    import torch
    from diffusers import (
        AutoencoderKL,
        ControlNetModel,
        DDIMScheduler,
        StableDiffusionControlNetPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        norm_num_groups=1)
    controlnet = ControlNetModel(
        block_out_channels=(4, 8), layers_per_block=1, in_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), cross_attention_dim=32,
        conditioning_embedding_out_channels=(16, 32), norm_num_groups=1)
    vae = AutoencoderKL(block_out_channels=[4, 8], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2,
                        up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=2)
    tok_dir = tiny_tokenizer_dir(root / "_tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, pad_token_id=1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=max(len(tokenizer), 100)))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    pipe = StableDiffusionControlNetPipeline(
        unet=unet, controlnet=controlnet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    base = root / "tiny-sd"
    pipe.save_pretrained(str(base))
    cn_dir = root / "tiny-controlnet"
    controlnet.save_pretrained(str(cn_dir))
    return base, cn_dir
