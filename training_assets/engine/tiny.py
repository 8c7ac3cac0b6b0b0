"""A tiny, randomly initialised Llama with an offline byte-level BPE tokenizer.

Tests and smoke runs need a real ``save_pretrained`` directory with the same architecture family as the
production base (so LoRA targets ``q_proj``/``v_proj`` exist and the chat template path is exercised),
but they must not download anything and must build in well under a few seconds.
"""

from __future__ import annotations

import os
from typing import Any

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Enough varied English, code and JSON that the BPE merges cover the kinds of text the tests feed it;
# byte-level pre-tokenisation means any string still encodes, just into more tokens.
_TRAINING_TEXT = """
The quick brown fox jumps over the lazy dog. A small model learns from a carefully mixed corpus.
system user assistant You are a helpful assistant. What is the capital of France? Paris is the capital.
def add(a, b):
    return a + b
{"name": "value", "count": 3, "items": [1, 2, 3], "ok": true, "missing": null}
Training data is gated, deduplicated, screened for contamination and mixed by weight before fine-tuning.
Please answer in JSON. The function signature is def parse(text: str) -> dict. Hello world!
0123456789 + - * / = < > ( ) [ ] { } : ; , . ' " ? ! @ # $ % ^ & | \\ ~ ` _
"""


def _build_tokenizer(vocab_size: int) -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in _TRAINING_TEXT.splitlines() if line] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
    )


def make_tiny_model(out_dir: str, seed: int = 0) -> dict[str, Any]:
    """Write a tiny Llama + tokenizer to ``out_dir``; same seed, same weights."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _build_tokenizer(vocab_size=600)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        # Wider than Llama's 0.02 so that logits are not near-uniform: a few LoRA steps on q/v then visibly
        # lower the loss, which is what smoke tests of the training loop check.
        initializer_range=0.1,
    )
    # fork_rng keeps the caller's global RNG untouched; seeding inside makes init reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "path": os.path.abspath(out_dir),
        "architecture": "LlamaForCausalLM",
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_size": config.vocab_size,
        "seed": seed,
    }
