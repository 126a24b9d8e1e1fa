#!/usr/bin/env python3
"""Tiny random-weight Hugging Face models and transformers' logits: the fixtures of `wgllm convert` and of
the CPU reference (testdata/hf-fixtures/, docs/models.md).

Needs torch and transformers (runs on CPU in float32, a few seconds). For each architecture it writes
OUT/<name>/ with what `save_pretrained` writes (config.json, *.safetensors, an index when sharded), a small
byte-level BPE tokenizer (tokenizer.json, tokenizer_config.json with a chat template) and expected.json:
  sequences:  token id lists; logits_<i>.f32 holds transformers' float32 logits for sequence i
              (little-endian, positions x vocab_size)
  tokenizer:  texts with the ids the `tokenizers` library gives them (special tokens added as the
              tokenizer's post-processor says)
Weights are random with std 0.15 (matrices), 0.5 (embeddings), 1 + N(0, 0.1) (norms) and N(0, 0.1) (biases),
so that logits are not flat. Some models are stored in float16/bfloat16: their weights are rounded to that
type before the float32 logits are computed, so the stored file is exactly the model that made them.

Usage: python3 tools/make_fixtures.py OUT_DIR
"""

import datetime
import json
import os
import platform
import sys

import torch
import transformers

SEED = 1234
TRANSFORMERS_MAJOR = int(transformers.__version__.split(".")[0])

# --- tokenizer --------------------------------------------------------------------------------------

# The pre-tokenizer expressions of the published tokenizers (Llama 3, Qwen 2, Llama 4).
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
               r"|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA4_REGEX = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
                r"(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
                r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = (
    "Once upon a time there was a little robot who wanted to learn how to read. Every morning the robot "
    "walked to the library and looked at the books. The letters were small and the words were long, but "
    "the robot did not give up. It read one page, then another, and soon it could read whole stories. "
    "The other robots were surprised: they had never seen a robot read before! Now the little robot "
    "reads to them every evening, and they all listen quietly until the story ends. "
)

TEXTS = [
    "Once upon a time, the robot read 123 stories.",
    "Hello World! It's the robots' library\n\nnew line",
    "They're reading: 4567 pages, CamelCaseWords and   spaces.",
]

CHAT_LLAMA3 = ("{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
CHAT_LLAMA4 = ("{{ bos_token }}{% for message in messages %}{{ '<|header_start|>' + message['role'] + "
               "'<|header_end|>\n\n' + message['content'] | trim + '<|eot|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|header_start|>assistant<|header_end|>\n\n' }}{% endif %}")
CHAT_CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
               "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
               "{% endif %}")


def bytes_to_unicode():
    """GPT-2's byte-level alphabet: each byte as one printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def train_bpe(n_merges):
    """Byte-level BPE merges learned from CORPUS, words split at spaces (a space joins the next word)."""
    alphabet = bytes_to_unicode()
    words = {}
    for i, w in enumerate(CORPUS.split(" ")):
        if not w:
            continue
        text = (" " if i else "") + w
        key = tuple(alphabet[b] for b in text.encode("utf-8"))
        words[key] = words.get(key, 0) + 1
    vocab = [alphabet[b] for b in range(256)]
    merges = []
    for _ in range(n_merges):
        pairs = {}
        for word, count in words.items():
            for a, b in zip(word, word[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + count
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        if best[0] + best[1] not in vocab:  # two merges may spell the same token
            vocab.append(best[0] + best[1])
        new_words = {}
        for word, count in words.items():
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] = new_words.get(tuple(out), 0) + count
        words = new_words
    return vocab, merges


def write_tokenizer(folder, family):
    vocab, merges = train_bpe(120)
    if family == "llama3":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
        regex, ignore_merges, bos, eos, chat = LLAMA3_REGEX, True, "<|begin_of_text|>", "<|eot_id|>", CHAT_LLAMA3
    elif family == "llama4":
        specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|header_start|>", "<|header_end|>", "<|eot|>"]
        regex, ignore_merges, bos, eos, chat = LLAMA4_REGEX, False, "<|begin_of_text|>", "<|eot|>", CHAT_LLAMA4
    else:
        specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        regex, ignore_merges, bos, eos, chat = QWEN2_REGEX, False, None, "<|im_end|>", CHAT_CHATML
    ids = {t: i for i, t in enumerate(vocab)}
    added = [{"id": len(vocab) + i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, s in enumerate(specials)]
    special_ids = {a["content"]: a["id"] for a in added}
    if bos:
        post = {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [special_ids[bos]], "tokens": [bos]}}}
    else:
        post = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tokenizer = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": ignore_merges, "vocab": ids, "merges": [f"{a} {b}" for a, b in merges]},
    }
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "add_bos_token": bos is not None, "model_max_length": 4096, "chat_template": chat}
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=1)
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    cases = [{"text": t, "ids": tok.encode(t).ids} for t in TEXTS]
    return len(vocab) + len(specials), cases


# --- models -----------------------------------------------------------------------------------------

def rope(theta, scaling=None):
    """Both config dialects: 5.x rope_parameters, 4.x rope_theta + rope_scaling."""
    if TRANSFORMERS_MAJOR >= 5:
        params = {"rope_type": "default", "rope_theta": theta}
        if scaling:
            params.update(scaling)
        return {"rope_parameters": params}
    out = {"rope_theta": theta}
    if scaling:
        out["rope_scaling"] = scaling
    return out


LLAMA3_SCALING = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                  "original_max_position_embeddings": 16}

# name: (config class, model class, tokenizer family, stored dtype, max shard size, sequence length,
#        config arguments; vocab_size is the tokenizer's plus `pad_vocab`)
MODELS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", "llama3", torch.float32, "150KB", 28, 0, dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, rms_norm_eps=1e-5, tie_word_embeddings=False,
        **rope(500000.0, LLAMA3_SCALING))),
    "mistral": ("MistralConfig", "MistralForCausalLM", "llama3", torch.float16, None, 28, 0, dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-5, sliding_window=6,
        tie_word_embeddings=False, **rope(10000.0))),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", "qwen", torch.float32, None, 28, 6, dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
        **rope(1000000.0))),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", "qwen", torch.bfloat16, None, 28, 0, dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=24, max_position_embeddings=128, rms_norm_eps=1e-6, tie_word_embeddings=False,
        attention_bias=False, use_sliding_window=False, **rope(1000000.0))),
    "qwen3moe": ("Qwen3MoeConfig", "Qwen3MoeForCausalLM", "qwen", torch.float32, None, 28, 0, dict(
        hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=4, num_experts_per_tok=2,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=128,
        rms_norm_eps=1e-6, tie_word_embeddings=False, use_sliding_window=False, **rope(1000000.0))),
    # Layers: 0 RoPE+dense, 1 RoPE+MoE, 2 NoPE+dense, 3 RoPE+MoE. Chunks of 8 positions; temperature tuning
    # from position 3 (floor_scale 4).
    "llama4": ("Llama4TextConfig", "Llama4ForCausalLM", "llama4", torch.float32, None, 40, 0, dict(
        hidden_size=64, intermediate_size=32, intermediate_size_mlp=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_local_experts=4, num_experts_per_tok=2,
        interleave_moe_layer_step=2, no_rope_layer_interval=3, attention_chunk_size=8, use_qk_norm=True,
        attn_temperature_tuning=True, floor_scale=4, attn_scale=0.1, max_position_embeddings=128,
        rms_norm_eps=1e-5, tie_word_embeddings=False, **rope(500000.0, LLAMA3_SCALING))),
}


def randomize(model, gen):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("layernorm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif "embed_tokens" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=gen))


def make(out_dir, name, log):
    cfg_name, model_name, family, dtype, shard, seq_len, pad_vocab, args = MODELS[name]
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    n_tokens, tok_cases = write_tokenizer(folder, family)
    config = getattr(transformers, cfg_name)(vocab_size=n_tokens + pad_vocab, **args)
    try:
        config._attn_implementation = "eager"
    except Exception as e:  # the model's setter below still asks for it
        log.write(f"{name}: config._attn_implementation: {e}\n")
    torch.manual_seed(SEED)
    model = getattr(transformers, model_name)(config).eval()
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    gen = torch.Generator().manual_seed(SEED + len(name))
    randomize(model, gen)
    if dtype != torch.float32:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(dtype).to(torch.float32))

    gen_ids = torch.Generator().manual_seed(SEED + 7)
    text_ids = [i for case in tok_cases for i in case["ids"]][:seq_len]
    sequences = [text_ids, torch.randint(0, config.vocab_size, (seq_len,), generator=gen_ids).tolist()]
    for i, ids in enumerate(sequences):
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float()
        logits.numpy().astype("<f4").tofile(os.path.join(folder, f"logits_{i}.f32"))
        log.write(f"{name}: sequence {i}: {len(ids)} tokens, logits std {logits.std().item():.3f}\n")

    save_model = model.to(dtype) if dtype != torch.float32 else model
    kwargs = {"max_shard_size": shard} if shard else {}
    save_model.save_pretrained(folder, **kwargs)
    expected = {"sequences": sequences, "tokenizer": tok_cases, "vocab_size": config.vocab_size,
                "stored_dtype": str(dtype).replace("torch.", "")}
    with open(os.path.join(folder, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)

    from safetensors import safe_open
    for fn in sorted(os.listdir(folder)):
        if fn.endswith(".safetensors"):
            with safe_open(os.path.join(folder, fn), "pt") as st:
                for k in st.keys():
                    t = st.get_slice(k)
                    log.write(f"  {fn}: {k} {t.get_dtype()} {t.get_shape()}\n")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    torch.set_num_threads(4)
    with open(os.path.join(out_dir, "make_fixtures.log"), "w") as log:
        for name in MODELS:
            try:
                make(out_dir, name, log)
            except Exception as e:  # keep going: one log shows every architecture's problem
                import traceback
                log.write(f"{name}: FAILED\n{traceback.format_exc()}\n")
                print(f"{name}: FAILED: {e}", file=sys.stderr)
    with open(os.path.join(out_dir, "PROVENANCE.txt"), "w") as f:
        f.write("Made by tools/make_fixtures.py (this repository) with random weights (seed %d).\n" % SEED)
        f.write("transformers %s, torch %s, tokenizers %s, Python %s\n" % (
            transformers.__version__, torch.__version__, __import__("tokenizers").__version__,
            platform.python_version()))
        f.write("date %s, machine %s (%s); logits computed on CPU in float32, eager attention\n" % (
            datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), platform.node(),
            platform.machine()))
        if torch.cuda.is_available():
            f.write("host GPU (not used for the logits): %s\n" % torch.cuda.get_device_name(0))


if __name__ == "__main__":
    main()
