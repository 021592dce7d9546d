#!/usr/bin/env python3
# -----------------------------------------------------------------------------
# make_qwen2_bench.py: a full-size Qwen2.5-1.5B-Instruct-shaped model with RANDOM weights,
# for speed benchmarks of precis's Qwen2 engines (speed does not depend on the values).
#
# Architecture = Qwen/Qwen2.5-1.5B-Instruct's config.json: hidden 1536, 28 layers, 12 heads,
# 2 KV heads, intermediate 8960, vocab 151936, tied embeddings, rope_theta 1e6, q/k/v biases.
# Writes (default --out /work/bench-models/qwen2.5-1.5b-random, OUTSIDE the repository):
#   config.json, generation_config.json (the real model's sampling defaults),
#   tokenizer.json / tokenizer_config.json: the tiny fixture tokenizer's BPE
#     (tests/fixtures/qwen2/tiny/tokenizer.json: same normalizer, pre-tokenizer, decoder,
#     Qwen2.5 chat template) with its vocabulary padded by dummy tokens " <N>" so that every
#     id 0..151935 decodes; the special tokens sit at the real ids (<|endoftext|> 151643,
#     <|im_start|> 151644, <|im_end|> 151645). Dummy tokens are never produced by encoding
#     (no merge builds them), so prompts tokenize like the tiny tokenizer (about 2x more
#     tokens than the real Qwen tokenizer gives for the same French text: compare prefill
#     timings by token count, not by text).
#   model.safetensors             bf16, 3.1 GB (no lm_head.weight: tied)
#   qwen2.5-1.5b-random-q8_0.gguf Q8_0 (2-D weights, token_embd included; norms/biases f32),
#                                 1.7 GB, llama.cpp's qwen2 layout (see tests/fixtures/qwen2/README.md)
#   Q4_K_M: NOT written: the gguf Python package (0.19.0) can dequantize Q4_K but has no
#     Q4_K quantizer. To get one, use llama.cpp:
#       llama-quantize --allow-requantize qwen2.5-1.5b-random-q8_0.gguf \
#           qwen2.5-1.5b-random-q4_k_m.gguf Q4_K_M
#     (requantizing from Q8_0 is fine for random weights; pass --gguf-bf16 here to also write
#     a BF16 GGUF as a cleaner input). The script checks and says so at run time.
#
# Run (about 3-5 minutes on 2 cores, ~5 GB of disk, ~5 GB of RAM at peak):
#   /work/venv/bin/python bench/make_qwen2_bench.py [--out DIR] [--gguf-bf16]
# Scaled-down smoke test (same code path, tiny dims, vocab still 151936; checks the outputs
# load in transformers and that the GGUF gives the same logits as the safetensors):
#   /work/venv/bin/python bench/make_qwen2_bench.py --small --out /tmp/qwen2-bench-small
# Pinned versions: those of tests/fixtures/make_qwen2.py (imported from there).
# -----------------------------------------------------------------------------
import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_qwen2 as tiny  # noqa: E402  (sets thread env vars, pins, template, helpers)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import gguf  # noqa: E402
import safetensors.torch  # noqa: E402

REAL_ENDOFTEXT, REAL_IM_START, REAL_IM_END = 151643, 151644, 151645

FULL = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": REAL_ENDOFTEXT,
    "eos_token_id": REAL_IM_END,
    "hidden_act": "silu",
    "hidden_size": 1536,
    "initializer_range": 0.02,
    "intermediate_size": 8960,
    "max_position_embeddings": 32768,
    "max_window_layers": 21,
    "model_type": "qwen2",
    "num_attention_heads": 12,
    "num_hidden_layers": 28,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": tiny.PINNED["transformers"],
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 151936,
}
SMALL_OVERRIDES = {"hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "max_window_layers": 2}

GENERATION_CONFIG = {  # Qwen2.5-1.5B-Instruct's generation_config.json
    "bos_token_id": REAL_ENDOFTEXT,
    "pad_token_id": REAL_ENDOFTEXT,
    "do_sample": True,
    "eos_token_id": [REAL_IM_END, REAL_ENDOFTEXT],
    "repetition_penalty": 1.1,
    "temperature": 0.7,
    "top_p": 0.8,
    "top_k": 20,
    "transformers_version": tiny.PINNED["transformers"],
}


def write_tokenizer(out: Path, vocab_size: int) -> None:
    src = json.loads((tiny.TINY / "tokenizer.json").read_text(encoding="utf-8"))
    bpe = src["model"]["vocab"]
    assert max(bpe.values()) == tiny.N_BPE - 1
    vocab = dict(bpe)
    specials = {REAL_ENDOFTEXT: "<|endoftext|>", REAL_IM_START: "<|im_start|>", REAL_IM_END: "<|im_end|>"}
    for i in range(tiny.N_BPE, vocab_size):
        # The special tokens are also model vocab entries at their ids: `tokenizers` keeps an
        # added token's id only if the model vocab has it or it comes right after the vocab.
        tok = specials[i] if i in specials else f"Ġ<{i}>"   # byte-level for " <i>"
        assert tok not in vocab
        vocab[tok] = i
    added = [{"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, c in sorted(specials.items())]
    src["added_tokens"] = added
    src["model"]["vocab"] = vocab
    tiny.dump_json(out / "tokenizer.json", src)
    cfg = dict(tiny.TOKENIZER_CONFIG)
    cfg["added_tokens_decoder"] = {str(a["id"]): {k: a[k] for k in ("content", "lstrip", "normalized", "rstrip",
                                                                      "single_word", "special")} for a in added}
    cfg["model_max_length"] = 131072
    tiny.dump_json(out / "tokenizer_config.json", cfg, compact=False)


def tensor_specs(c: dict) -> list[tuple[str, tuple[int, ...], str]]:
    """(HF name, shape, kind) in safetensors order."""
    h, ff, nh, nkv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    hd = h // nh
    specs = [("model.embed_tokens.weight", (c["vocab_size"], h), "w")]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        specs += [
            (p + "input_layernorm.weight", (h,), "norm"),
            (p + "self_attn.q_proj.weight", (nh * hd, h), "w"),
            (p + "self_attn.q_proj.bias", (nh * hd,), "b"),
            (p + "self_attn.k_proj.weight", (nkv * hd, h), "w"),
            (p + "self_attn.k_proj.bias", (nkv * hd,), "b"),
            (p + "self_attn.v_proj.weight", (nkv * hd, h), "w"),
            (p + "self_attn.v_proj.bias", (nkv * hd,), "b"),
            (p + "self_attn.o_proj.weight", (h, nh * hd), "w"),
            (p + "post_attention_layernorm.weight", (h,), "norm"),
            (p + "mlp.gate_proj.weight", (ff, h), "w"),
            (p + "mlp.up_proj.weight", (ff, h), "w"),
            (p + "mlp.down_proj.weight", (h, ff), "w"),
        ]
    specs.append(("model.norm.weight", (h,), "norm"))
    return sorted(specs)


def random_weights(c: dict, seed: int = 1234) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, kind in tensor_specs(c):
        if kind == "norm":
            t = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif kind == "b":
            t = 0.1 * torch.randn(shape, generator=g)
        else:
            t = c["initializer_range"] * torch.randn(shape, generator=g)
        sd[name] = t.to(torch.bfloat16)
        del t
    return sd


def quantize_q8_0(a: np.ndarray, rows_per_chunk: int = 8192) -> np.ndarray:
    assert a.shape[-1] % tiny.QK == 0, a.shape
    parts = [gguf.quants.quantize(np.ascontiguousarray(a[i:i + rows_per_chunk], dtype=np.float32),
                                  gguf.GGMLQuantizationType.Q8_0)
             for i in range(0, a.shape[0], rows_per_chunk)]
    return np.concatenate(parts, axis=0)


def write_gguf(path: Path, out: Path, c: dict, sd: dict[str, torch.Tensor], qtype: str, name: str) -> None:
    ftype = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "bf16": gguf.LlamaFileType.MOSTLY_BF16}[qtype]
    w = gguf.GGUFWriter(str(path), "qwen2")
    w.add_type(gguf.GGUFType.MODEL)
    w.add_name(name)
    w.add_size_label("1.5B" if c["num_hidden_layers"] == 28 else "small")
    w.add_block_count(c["num_hidden_layers"])
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_rope_freq_base(c["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    # Vocabulary (convert_hf_to_gguf.py get_vocab_base + SpecialVocab).
    vocab = json.loads((out / "tokenizer.json").read_text(encoding="utf-8"))
    rev = {i: t for t, i in vocab["model"]["vocab"].items()}
    for a in vocab["added_tokens"]:
        rev[a["id"]] = a["content"]
    special_ids = {a["id"] for a in vocab["added_tokens"]}
    tokens, types = [], []
    for i in range(c["vocab_size"]):
        if i not in rev:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        else:
            tokens.append(rev[i])
            types.append(gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    sv = gguf.SpecialVocab(out, load_merges=True, n_vocab=len(tokens))
    assert sv.special_token_ids == {"bos": REAL_ENDOFTEXT, "eos": REAL_IM_END, "pad": REAL_ENDOFTEXT}, sv.special_token_ids
    sv.add_to_gguf(w, quiet=True)

    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, c["num_hidden_layers"])
    plan = []
    for hf_name, t in sd.items():
        gname = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        quant = t.ndim == 2 and not gname.endswith("_norm.weight")
        plan.append((gname, hf_name, quant))

    def order(item):
        n = item[0]
        return (0, 0, n) if n.startswith("token_embd") else (1, int(n.split(".")[1]), n) if n.startswith("blk.") else (2, 0, n)
    plan.sort(key=order)
    for gname, hf_name, quant in plan:
        shape = tuple(sd[hf_name].shape)
        if quant and qtype == "q8_0":
            nbytes = shape[0] * (shape[1] // tiny.QK) * gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][1]
            w.add_tensor_info(gname, (shape[0], nbytes // shape[0]), np.dtype(np.uint8), nbytes,
                              raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        elif quant and qtype == "bf16":
            w.add_tensor_info(gname, shape, np.dtype(np.uint16), math.prod(shape) * 2,
                              raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            w.add_tensor_info(gname, shape, np.dtype(np.float32), math.prod(shape) * 4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for gname, hf_name, quant in plan:
        t = sd[hf_name]
        if quant and qtype == "q8_0":
            data = quantize_q8_0(t.float().numpy())
        elif quant and qtype == "bf16":
            data = t.view(torch.int16).numpy().view(np.uint16)
        else:
            data = t.float().numpy()
        w.write_tensor_data(data)
        del data
    w.close()


def check_small(out: Path, gguf_path: Path) -> None:
    import transformers
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [151643, 151644, 151645]
    prompt = tok.apply_chat_template([{"role": "user", "content": "Résume l'article."}], tokenize=False,
                                     add_generation_prompt=True)
    ids = tok(prompt)["input_ids"]
    assert tok.decode([151000, 5]) == " <151000>&"
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    with torch.no_grad():
        ref = model(torch.tensor([ids])).logits[0, -1].double().numpy()
    got = tiny.numpy_forward_from_gguf(gguf_path, ids)
    rel = np.abs(got - ref).max() / np.abs(ref).max()
    print(f"small check: {len(ids)} prompt ids, max |logit diff| GGUF q8_0 vs safetensors = "
          f"{np.abs(got - ref).max():.3g} (relative {rel:.3g})")
    assert rel < 0.05, rel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=Path("/work/bench-models/qwen2.5-1.5b-random"))
    ap.add_argument("--small", action="store_true", help="scaled-down dims (smoke test), same code path")
    ap.add_argument("--gguf-bf16", action="store_true", help="also write a BF16 GGUF (input for llama-quantize)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    tiny.check_versions()
    c = dict(FULL, **(SMALL_OVERRIDES if args.small else {}))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()

    tiny.dump_json(out / "config.json", c, compact=False)
    tiny.dump_json(out / "generation_config.json", GENERATION_CONFIG, compact=False)
    write_tokenizer(out, c["vocab_size"])
    print(f"[{time.time() - t0:6.1f}s] tokenizer and configs")

    sd = random_weights(c)
    n_params = sum(t.numel() for t in sd.values())
    print(f"[{time.time() - t0:6.1f}s] {n_params / 1e9:.3f}B random bf16 parameters")
    safetensors.torch.save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # save_file creates it 0600
    print(f"[{time.time() - t0:6.1f}s] model.safetensors")

    stem = "qwen2.5-1.5b-random" if not args.small else "qwen2-small-random"
    q8 = out / f"{stem}-q8_0.gguf"
    write_gguf(q8, out, c, sd, "q8_0", stem)
    print(f"[{time.time() - t0:6.1f}s] {q8.name}")
    if args.gguf_bf16:
        write_gguf(out / f"{stem}-bf16.gguf", out, c, sd, "bf16", stem)
        print(f"[{time.time() - t0:6.1f}s] {stem}-bf16.gguf")
    try:
        gguf.quants.quantize(np.zeros((1, 256), dtype=np.float32), gguf.GGMLQuantizationType.Q4_K)
        print("note: this gguf version can quantize Q4_K, but Q4_K_M's per-tensor mix is llama-quantize's; not written")
    except NotImplementedError:
        print(f"Q4_K_M not written: gguf {tiny._dist_version('gguf')} has no Q4_K quantizer. Use llama.cpp: "
              f"llama-quantize --allow-requantize {q8.name} {stem}-q4_k_m.gguf Q4_K_M")
    del sd
    if args.small:
        check_small(out, q8)
    for p in sorted(out.iterdir()):
        print(f"  {p.name:<40} {p.stat().st_size / 1e6:10.1f} MB")


if __name__ == "__main__":
    main()
