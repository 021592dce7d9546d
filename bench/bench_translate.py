#!/usr/bin/env python3
"""Translation speed: precis against transformers (PyTorch) and CTranslate2 (float32, int8)
on a model of the real opus-mt-fr-en architecture and size with random weights.

Run from the repository root, after `cargo build --release` and
`python bench/make_marian_bench.py` (which writes the model to /work/bench-models/...):

    /work/venv/bin/python bench/bench_translate.py --model /work/bench-models/opus-mt-fr-en-random

Each tool runs as its own process (whole process against whole process: start, load,
translate, exit), on the sentences of samples/ as precis segments them, in batches of 16
sorted by length, greedy and 4 beams, with 2 threads. Reported: sentences/s and generated
tokens/s over the translation itself, whole-process wall time, load time, peak RSS.
Speed does not depend on weight values; the model's EOS bias makes outputs about as long
as their sources. Prints a Markdown table for BENCHMARKS.md.

Versions used: see BENCHMARKS.md (python 3.11, torch, transformers, ctranslate2).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

THREADS = 2
BATCH = 16


def sentences(precis):
    out = subprocess.run(
        [precis, "inspect", "--format", "jsonl", *sorted(
            os.path.join("samples", f) for f in os.listdir("samples"))],
        check=True, capture_output=True, text=True).stdout
    sents = []
    for line in out.splitlines():
        doc = json.loads(line)
        if doc["title"]:
            sents.append(doc["title"])
        for p in doc["paragraphs"]:
            sents.extend(p["sentences"])
    return sents


def child(tool, model, beams, path, ct2_dir):
    """Runs inside a fresh process: load, translate, report JSON on stdout."""
    import torch  # noqa: F401  (both Python tools need it or its threads set)
    t0 = time.perf_counter()
    sents = [l.rstrip("\n") for l in open(path, encoding="utf-8")]
    if tool == "transformers":
        import torch
        from transformers import MarianMTModel, MarianTokenizer
        torch.set_num_threads(THREADS)
        tok = MarianTokenizer.from_pretrained(model)
        m = MarianMTModel.from_pretrained(model).eval()
        t1 = time.perf_counter()
        order = sorted(range(len(sents)), key=lambda i: len(tok(sents[i])["input_ids"]))
        gen = 0
        with torch.inference_mode():
            for b in range(0, len(order), BATCH):
                batch = [sents[i] for i in order[b:b + BATCH]]
                enc = tok(batch, return_tensors="pt", padding=True)
                out = m.generate(**enc, num_beams=beams, max_length=512)
                gen += int((out[:, 1:] != m.config.pad_token_id).sum())
    else:
        import ctranslate2
        import sentencepiece as spm
        compute = "int8" if tool == "ct2-int8" else "float32"
        sp = spm.SentencePieceProcessor(model_file=os.path.join(model, "source.spm"))
        tr = ctranslate2.Translator(ct2_dir, device="cpu", compute_type=compute,
                                    intra_threads=THREADS, inter_threads=1)
        t1 = time.perf_counter()
        toks = [sp.encode(s, out_type=str) + ["</s>"] for s in sents]
        res = tr.translate_batch(toks, max_batch_size=BATCH, batch_type="examples",
                                 beam_size=beams, max_decoding_length=512)
        gen = sum(len(r.hypotheses[0]) + 1 for r in res)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"load_s": t1 - t0, "translate_s": t2 - t1, "tokens": gen, "rss_mb": rss}))


def run_precis(precis, model, beams, path):
    t0 = time.perf_counter()
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", precis, "translate", "--translation-model", model,
         "--beams", str(beams), "--batch-tokens", "1000000", "--batch-size", str(BATCH),
         "--format", "json", "-q", path],
        check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    report = json.loads(proc.stdout)
    rss = int(proc.stderr.strip().splitlines()[-1]) / 1024
    t = report["timings"]
    return {"load_s": t.get("load_ms", 0) / 1000, "translate_s": t["translate_ms"] / 1000,
            "tokens": report.get("generated_tokens", 0), "rss_mb": rss, "wall_s": wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--precis", default="target/release/precis")
    ap.add_argument("--tools", default="precis,transformers,ct2-float32,ct2-int8",
                    help="comma-separated subset to run (default: all four)")
    ap.add_argument("--beams", default="1,4", help="comma-separated beam sizes (default: 1,4)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        tool, beams, path, ct2_dir = args.child
        return child(tool, args.model, int(beams), path, ct2_dir)
    sents = sentences(args.precis)
    work = tempfile.mkdtemp(prefix="precis-bench-")
    path = os.path.join(work, "sentences.txt")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join(sents) + "\n")
    lines = os.path.join(work, "lines.txt")
    with open(lines, "w", encoding="utf-8") as f:
        f.write("\n".join(sents) + "\n")
    ct2_dir = os.path.join(work, "ct2")
    subprocess.run([os.path.join(os.path.dirname(sys.executable), "ct2-transformers-converter"),
                    "--model", args.model, "--output_dir", ct2_dir, "--force"],
                   check=True, capture_output=True)
    print(f"{len(sents)} sentences, {THREADS} threads, batches of {BATCH}\n")
    print("| tool | beams | sentences/s | tokens/s | translate s | process s | load s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for beams in (int(b) for b in args.beams.split(",")):
        for tool in args.tools.split(","):
            if tool == "precis":
                r = run_precis(args.precis, args.model, beams, path)
            else:
                t0 = time.perf_counter()
                env = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
                out = subprocess.run([sys.executable, __file__, "--model", args.model,
                                      "--child", tool, str(beams), lines, ct2_dir],
                                     check=True, capture_output=True, text=True, env=env)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r["wall_s"] = time.perf_counter() - t0
            print(f"| {tool} | {beams} | {len(sents) / r['translate_s']:.1f} | "
                  f"{r['tokens'] / r['translate_s']:.0f} | {r['translate_s']:.2f} | "
                  f"{r['wall_s']:.2f} | {r['load_s']:.2f} | {r['rss_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
