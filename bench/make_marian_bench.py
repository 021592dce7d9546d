#!/usr/bin/env python3
# -----------------------------------------------------------------------------
# make_marian_bench.py: a full-size Helsinki-NLP/opus-mt-fr-en-shaped Marian model with RANDOM
# weights, for speed benchmarks of precis's Marian engine (speed does not depend on the values).
#
# Architecture = opus-mt-fr-en's config.json: d_model 512, 6 encoder + 6 decoder layers, 8 heads,
# ffn 2048, vocab 59514 (shared, tied embeddings), max_position_embeddings 512, swish,
# scale_embedding, static sinusoidal positions, pad 59513 (= decoder_start), eos 0; the
# generation_config of the real model (num_beams 4, max_length 512, bad_words_ids [[59513]],
# forced_eos_token_id 0, renormalize_logits).
# Writes (default --out /work/bench-models/opus-mt-fr-en-random, OUTSIDE the repository):
#   config.json, generation_config.json, model.safetensors (float32, ~300 MB),
#   source.spm = target.spm: a SentencePiece unigram model (nmt_nfkc, as Marian's) trained on the
#     French text of samples/*.txt and the GSD test sentences (a few thousand pieces, far fewer
#     than the real 59k, so French text gives more tokens than with the real model),
#   vocab.json: </s>=0, <unk>=1, the pieces by frequency, then dummy pieces "▁dummy<N>" (never
#     produced by encoding) up to id 59512, <pad>=59513, so every id 0..59513 decodes,
#   tokenizer_config.json.
# Output lengths: a random decoder either stops at once or loops forever, so the script gives the
# model a source-length-aware "length clock" (like the tiny fixtures' clock in
# tests/fixtures/make_marian.py, plus one cross-attention head that subtracts the mean source
# position; see install_source_length_clock) and then picks final_logits_bias[eos] so that greedy
# outputs on the samples' sentences are, in total, as long as their sources. It prints the mean
# output/source length ratio and the correlation of output and source lengths (outputs follow
# the source length only roughly: compare timings by tokens generated, not by sentence).
#
# With the pinned versions it picks final_logits_bias[eos] = -3.0: on the 161 sample sentences
# greedy outputs are 1.05x their source length on average per sentence (0.99x in total), with a
# correlation of 0.75 between output and source lengths; but the longest sentence (137 tokens)
# never stops and runs to max_length 512 (the clock's sinusoid, angular frequency 0.012, peaks at
# position ~131). Sentences under ~100 tokens stop.
#
# Run (about 15 minutes on 2 cores, most of it greedy decoding with the 59514-word output layer;
# peak RAM ~12 GB: the teacher-forced pass over all 161 sentences holds 161 x 153 x 59514 logits;
# 300 MB of disk). It rewrites --out in place: do not run it while a benchmark reads that folder.
#   /work/venv/bin/python bench/make_marian_bench.py [--out DIR]
# Smoke test with tiny dims (same code path, vocab still 59514):
#   /work/venv/bin/python bench/make_marian_bench.py --small --out /tmp/marian-bench-small
# Pinned versions: those of tests/fixtures/make_marian.py (imported from there).
# -----------------------------------------------------------------------------
import argparse
import io
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "fixtures"))
import make_marian as tiny  # noqa: E402  (version pins, text loading, length clock helpers)

import numpy as np  # noqa: E402
import sentencepiece as spm  # noqa: E402
import torch  # noqa: E402
from transformers import MarianConfig, MarianMTModel, MarianTokenizer  # noqa: E402

VOCAB_SIZE = 59514
PAD = VOCAB_SIZE - 1
EOS = 0

FULL = dict(d_model=512, layers=6, heads=8, ffn=2048, max_pos=512)
SMALL = dict(d_model=64, layers=2, heads=4, ffn=128, max_pos=512)


def train_spm(lines, vocab_size=8000, seed=4321):
    spm.set_random_generator_seed(seed)
    bio = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=bio, model_type="unigram", vocab_size=vocab_size,
        hard_vocab_limit=False, normalization_rule_name="nmt_nfkc", character_coverage=1.0,
        byte_fallback=False, num_threads=1, minloglevel=2,
    )
    data = bio.getvalue()
    return data, spm.SentencePieceProcessor(model_proto=data)


def build_vocab(sp, lines):
    counts = Counter()
    for line in lines:
        counts.update(sp.encode(line, out_type=str))
    pieces = sorted(counts, key=lambda p: (-counts[p], p))
    seen = set(pieces)
    unseen = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
              if not (sp.is_control(i) or sp.is_unknown(i)) and sp.id_to_piece(i) not in seen]
    entries = ["</s>", "<unk>"] + [p for p in pieces + unseen if p not in ("</s>", "<unk>", "<pad>")]
    n = 0
    while len(entries) < PAD:
        entries.append(f"\u2581dummy{n}")
        n += 1
    vocab = {p: i for i, p in enumerate(entries)}
    assert len(vocab) == PAD
    vocab["<pad>"] = PAD
    return vocab


def make_config(dims):
    return MarianConfig(
        vocab_size=VOCAB_SIZE, decoder_vocab_size=VOCAB_SIZE, max_position_embeddings=dims["max_pos"],
        encoder_layers=dims["layers"], decoder_layers=dims["layers"],
        encoder_attention_heads=dims["heads"], decoder_attention_heads=dims["heads"],
        encoder_ffn_dim=dims["ffn"], decoder_ffn_dim=dims["ffn"], d_model=dims["d_model"],
        activation_function="swish", scale_embedding=True, share_encoder_decoder_embeddings=True,
        tie_word_embeddings=True, pad_token_id=PAD, decoder_start_token_id=PAD, eos_token_id=EOS,
        forced_eos_token_id=EOS, bos_token_id=0, dropout=0.1, attention_dropout=0.0,
        activation_dropout=0.0, init_std=0.02, architectures=["MarianMTModel"],
    )


def clock_column(d_model, omega=0.012):
    """The sin column of the sinusoidal positions whose angular frequency is closest to omega
    (column c has 10000 ** (-2c / d_model)); 0.012 rises nearly linearly over positions 0..120."""
    c = round(d_model * math.log(1 / omega) / (2 * math.log(10000)))
    return max(0, min(d_model // 2 - 1, c))


def layer_norms(model):
    out = []
    for layer in model.model.encoder.layers:
        out += [layer.self_attn_layer_norm, layer.final_layer_norm]
    for layer in model.model.decoder.layers:
        out += [layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm]
    return out


def install_source_length_clock(model, enc, k, beta=2.5, eos_k=0.05, gain=480.0, horizon=None):
    """Hidden dimension k carries the slow sinusoid of the position through the encoder and the
    decoder (no sublayer writes it, token embeddings are 0 there, every layer norm passes it with a
    gain equal to its typical input scale). Head 0 of the first decoder cross-attention attends
    uniformly to the source (zero query) and reads the encoder's dim k, i.e. the mean source
    position, ~ (source length)/2; it writes -beta times that into the decoder's dim k. The EOS row
    of the tied embedding reads dim k, so the EOS logit grows like (decoder position - beta/2 *
    source length) and greedy outputs stop after about as many tokens as the source has."""
    cfg = model.config
    d = cfg.d_model
    others = [i for i in range(d) if i != k]
    hd = d // cfg.decoder_attention_heads
    with torch.no_grad():
        for stack, is_dec in ((model.model.encoder, False), (model.model.decoder, True)):
            for layer in stack.layers:
                lins = [layer.self_attn.out_proj, layer.fc2] + ([layer.encoder_attn.out_proj] if is_dec else [])
                for lin in lins:
                    lin.weight[k, :] = 0.0
                    lin.bias[k] = 0.0
                    lin.weight[others, :] -= lin.weight[others, :].mean(0, keepdim=True)
                    lin.bias[others] -= lin.bias[others].mean()
        emb = model.model.shared.weight
        emb[:, k] = 0.0
        emb[:, others] -= emb[:, others].mean(1, keepdim=True)
        emb[PAD] = 0.0
        emb[EOS] *= 0.2
        emb[EOS, k] = eos_k
        xa = model.model.decoder.layers[0].encoder_attn
        rows = slice(0, hd)
        xa.q_proj.weight[rows] = 0.0
        xa.q_proj.bias[rows] = 0.0
        xa.v_proj.weight[rows] = 0.0
        xa.v_proj.bias[rows] = 0.0
        xa.v_proj.weight[0, k] = 1.0
        xa.out_proj.weight[:, rows] = 0.0
        xa.out_proj.weight[k, 0] = -beta
        lns = layer_norms(model)
        for _ in range(2):
            sig = {}

            def hook(i):
                return lambda mod, inp: sig.setdefault(i, []).append(float(inp[0].std(-1, unbiased=False).mean()))

            tiny.eos_free_greedy(model, enc, EOS, PAD, hooks=[(ln, hook(i)) for i, ln in enumerate(lns)],
                                 max_length=horizon)
            for i, ln in enumerate(lns):
                ln.weight[k] = round(float(np.mean(sig[i])), 4)
                ln.bias[k] = 0.0
        lns[-1].weight[k] *= gain


def greedy_out_lengths(model, tok, texts, batch=32):
    lens = []
    for i in range(0, len(texts), batch):
        enc = tok(texts[i:i + batch], padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**enc, num_beams=1)
        for row in out.tolist():
            n = len(row)
            for j in range(1, len(row)):
                if row[j] == EOS:
                    n = j + 1
                    break
            lens.append(n - 1)
    return lens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/bench-models/opus-mt-fr-en-random")
    ap.add_argument("--small", action="store_true", help="tiny dims, for a quick check of the code path")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    t0 = time.time()
    tiny.check_versions()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    corpus = [line.strip() for line in tiny.sample_lines()] + tiny.gsd_sentences()
    spm_bytes, sp = train_spm(corpus)
    vocab = build_vocab(sp, corpus)
    (out / "source.spm").write_bytes(spm_bytes)
    (out / "target.spm").write_bytes(spm_bytes)
    tiny.write_json_plain(vocab, out / "vocab.json", indent=2)
    tok = MarianTokenizer(source_spm=str(out / "source.spm"), target_spm=str(out / "target.spm"),
                          vocab=str(out / "vocab.json"), source_lang="fr", target_lang="en")
    with tempfile.TemporaryDirectory() as td:
        tok.save_pretrained(td)
        d = json.loads((Path(td) / "tokenizer_config.json").read_text(encoding="utf-8"))
        d.pop("name_or_path", None)
        tiny.write_json_plain(dict(sorted(d.items())), out / "tokenizer_config.json", indent=2)
    print(f"tokenizer: {sp.get_piece_size()} SentencePiece pieces, vocab.json {len(vocab)} entries "
          f"({time.time() - t0:.0f}s)")

    # the samples' sentences, as the benchmark will see them (inputs under max_position_embeddings)
    dims = SMALL if args.small else FULL
    texts = [s for s in tiny.sample_sentences() if len(tok(s)["input_ids"]) <= 200]
    src_lens = [len(tok(s)["input_ids"]) for s in texts]

    cfg = make_config(dims)
    torch.manual_seed(59514)
    model = MarianMTModel(cfg)  # transformers' own init: normal(0, 0.02), layer norms 1/0
    model.eval()
    tiny.set_generation_config(model, cfg)
    model.generation_config.max_length = 512
    with torch.no_grad():
        g = torch.Generator().manual_seed(7)
        bias = 0.5 * torch.randn(model.final_logits_bias.shape, generator=g)
        bias[0, PAD] = 0.0
        model.final_logits_bias.copy_(bias)
        model.model.shared.weight[PAD].zero_()

    # length clock, then the EOS bias: on EOS-free greedy runs of up to `horizon` tokens
    horizon = max(src_lens) + 16
    k = clock_column(cfg.d_model)
    enc = tok(texts, padding=True, return_tensors="pt")
    enc_sub = tok(texts[::3], padding=True, return_tensors="pt")  # layer-norm scales: a third is enough
    install_source_length_clock(model, enc_sub, k, horizon=horizon)
    margins = tiny.eos_free_greedy(model, enc, EOS, PAD, max_length=horizon)
    print(f"length clock on hidden dim {k}; EOS-free greedy runs done ({time.time() - t0:.0f}s)")

    def lengths(b):
        res = []
        for row in margins:
            idx = np.nonzero(row + b > 0)[0]
            res.append(int(idx[0]) + 1 if len(idx) else 512)  # no stop within the horizon: count it as max_length
        return res

    # the bias whose outputs total the source tokens
    target = sum(src_lens)
    best = None
    for step in range(481):
        b = round(-60.0 + 0.25 * step, 2)
        key = (abs(sum(lengths(b)) - target), abs(b))
        if best is None or key < best[0]:
            best = (key, b)
    b = best[1]
    with torch.no_grad():
        model.final_logits_bias[0, EOS] = b

    model.save_pretrained(out)
    c = json.loads((out / "config.json").read_text(encoding="utf-8"))
    c.pop("transformers_version", None)
    c.pop("dtype", None)
    c.update(tiny.LEGACY_CONFIG_KEYS)
    c.update({"torch_dtype": "float32", "num_beams": 4, "max_length": 512, "bad_words_ids": [[PAD]]})
    tiny.write_json_plain(dict(sorted(c.items())), out / "config.json", indent=2)
    gpath = out / "generation_config.json"
    gc = json.loads(gpath.read_text(encoding="utf-8"))
    for key in ("transformers_version", "_from_model_config", "output_attentions", "output_hidden_states", "use_cache"):
        gc.pop(key, None)
    tiny.write_json_plain(dict(sorted(gc.items())), gpath, indent=2)

    # check: reload and run real greedy generation
    model = MarianMTModel.from_pretrained(str(out), dtype=torch.float32)
    model.eval()
    tok = MarianTokenizer.from_pretrained(str(out))
    t1 = time.time()
    out_lens = greedy_out_lengths(model, tok, texts)
    dt = time.time() - t1
    ratios = [o / s for o, s in zip(out_lens, src_lens)]
    corr = float(np.corrcoef(out_lens, src_lens)[0, 1]) if len(set(out_lens)) > 1 else 0.0
    hit = sum(1 for o in out_lens if o >= 511)
    print(f"final_logits_bias[eos] = {b}; greedy on {len(texts)} sample sentences ({dt:.0f}s): "
          f"source tokens mean {np.mean(src_lens):.1f} (min {min(src_lens)}, max {max(src_lens)}), "
          f"output tokens mean {np.mean(out_lens):.1f} (min {min(out_lens)}, max {max(out_lens)}), "
          f"{hit} hit max_length")
    print(f"mean output/source length ratio: {np.mean(ratios):.3f} per sentence, "
          f"{sum(out_lens) / sum(src_lens):.3f} in total; correlation of output and source lengths "
          f"{corr:.2f}; median per-sentence ratio {np.median(ratios):.2f}")
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.0f} MB) in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
