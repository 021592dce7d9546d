#!/usr/bin/env python3
"""Summary-LLM speed: precis against llama.cpp (llama-bench) and, optionally, transformers
(PyTorch) on a model of the real Qwen2.5-1.5B-Instruct architecture and size with random
weights (speed does not depend on the values).

Run from the repository root, after `cargo build --release`, `python bench/make_qwen2_bench.py`
(which writes the model to /work/bench-models/qwen2.5-1.5b-random) and the Q4_K_M step below:

    /work/venv/bin/python bench/bench_summarize.py \
        --llama-bench /work/llama.cpp/build/bin/llama-bench [--transformers]

Options: --model-dir DIR (default /work/bench-models/qwen2.5-1.5b-random), --precis BIN
(default target/release/precis), --quants q4_k_m,q8_0, --tools llama.cpp,precis,
--prompt-tokens 800, --gen-tokens 128, -r/--repetitions 3 (llama-bench's -r, and as many
precis / transformers processes), --transformers (adds transformers bf16 and f32 on
model.safetensors; --transformers-dtypes to pick), --llama-args "..." (extra llama-bench
arguments, e.g. "-mmp 0").

What runs, 2 threads everywhere, each tool as its own process (whole process: start, load,
prompt, generation, exit), peak RSS of the whole process from /usr/bin/time -f %M:
  * the article: samples/*.txt concatenated, then cut (at a word) so that precis' summary
    prompt (chat template applied, `precis summarize --dump-prompt`) has about
    --prompt-tokens tokens; the tokenizer is the bench model's padded tiny BPE (about 2x the
    real Qwen tokenizer's count for the same French text).
  * llama.cpp, per GGUF: `llama-bench -m GGUF -p P -n N -t 2 -r R -o json --progress`, with
    P = precis' prompt length; pp and tg are llama-bench's avg_ts ± stddev_ts (after its
    warmup run). Load s = process start to llama-bench's first "warmup prompt run" line
    (model load and context creation; the weights are mmapped by default, so pages still
    come in during the warmup). Process s is the whole llama-bench run (warmups and R
    repetitions of each test): not comparable with the others.
  * precis, per GGUF, R processes: `precis summarize --summary-model GGUF --engine llm
    --max-new-tokens N --repeat-penalty 1 --format json -v ARTICLE` with RAYON_NUM_THREADS=2
    (greedy, no repetition penalty: no sampling work, as in llama-bench). pp = prompt_tokens /
    timings.prefill_ms; tg = (generated_tokens - 1) / timings.generate_ms (the first token
    comes from the prefill's logits; generate_ms holds one forward pass per further token,
    like llama-bench's tg). precis has no ignore-EOS option: a random model may stop early at
    its end-of-turn token, and the table shows the tokens actually generated. precis'
    summarize JSON has no load timing; load s is parsed from the -v log line
    "summary model ... loaded in X s" (tokenizer + weights).
  * transformers (--transformers), per dtype, R processes: AutoModelForCausalLM on
    model.safetensors, torch.set_num_threads(2), the prompt = precis' dumped prompt
    tokenized by the same tokenizer.json, model.generate(greedy, max_new_tokens = N =
    min_new_tokens, so exactly N tokens). A streamer timestamps the first new token: pp =
    prompt / (first token - start), tg = (N - 1) / (end - first token). Load s = after
    `import torch` to model loaded (transformers import included), as bench_translate.py.
Rates are means ± standard deviation over the R processes (llama-bench: over its R runs).
Prints a Markdown table for BENCHMARKS.md.

Versions used (smoke run, 2 shared cores):
  llama.cpp 0c1e57098 (the vendor/llama.cpp of llama-cpp-python 0.3.36's sdist on PyPI;
  ggml 0.25.3), CPU only, gcc 12.2.0 (Debian 12), cmake 4.4.4 (pip), built in /work/llama.cpp:
    cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DGGML_OPENMP=ON -DLLAMA_BUILD_COMMIT=0c1e57098 \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF
    nice -n 19 cmake --build build -j2 --target llama-bench llama-quantize
  Q4_K_M made from the Q8_0 (requantizing is fine for random weights):
    build/bin/llama-quantize --allow-requantize qwen2.5-1.5b-random-q8_0.gguf \
        qwen2.5-1.5b-random-q4_k_m.gguf Q4_K_M
  python 3.11, torch 2.15.0, transformers 5.23.0, tokenizers 0.23.3.
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time

THREADS = 2
DEFAULT_DIR = "/work/bench-models/qwen2.5-1.5b-random"


def gguf_path(model_dir, quant):
    return os.path.join(model_dir, f"qwen2.5-1.5b-random-{quant}.gguf")


def prompt_tokens(precis, model, article):
    """precis' summary prompt for `article` and its length in tokens (no weights read)."""
    proc = subprocess.run(
        [precis, "summarize", "--summary-model", model, "--dump-prompt", "-v", article],
        check=True, capture_output=True, text=True,
        env=dict(os.environ, RAYON_NUM_THREADS=str(THREADS), HF_HUB_OFFLINE="1"))
    m = re.search(r"prompt has (\d+) tokens", proc.stderr)
    if not m:
        sys.exit(f"no token count in precis --dump-prompt -v's log:\n{proc.stderr}")
    return proc.stdout, int(m.group(1))


def make_article(precis, model, target, work):
    """samples/*.txt concatenated, cut at the word that brings the prompt closest to `target`
    tokens from below (binary search on the word count)."""
    text = "\n\n".join(open(os.path.join("samples", f), encoding="utf-8").read().strip()
                       for f in sorted(os.listdir("samples")))
    spans = [m.end() for m in re.finditer(r"\S+", text)]
    path = os.path.join(work, "article.txt")

    def measure(words):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text[:spans[words - 1]] + "\n")
        return prompt_tokens(precis, model, path)

    lo, hi = 1, len(spans)
    if measure(hi)[1] <= target:
        lo = hi
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(mid)[1] <= target:
            lo = mid
        else:
            hi = mid - 1
    prompt, n = measure(lo)
    with open(os.path.join(work, "prompt.txt"), "w", encoding="utf-8") as f:
        f.write(prompt)
    return path, prompt, n


def timed(cmd, env=None, watch=None):
    """Run `cmd` under /usr/bin/time -f %M: (stdout, stderr lines, peak RSS MB, wall s,
    seconds from start to the first stderr line containing `watch`)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", *cmd], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    out = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    err, seen = [], None
    for line in proc.stderr:
        if watch and seen is None and watch in line:
            seen = time.perf_counter() - t0
        err.append(line.rstrip("\n"))
    reader.join()
    rc = proc.wait()
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"{shlex.join(cmd)} failed ({rc}):\n" + "\n".join(err[-30:]))
    return out[0], err, int(err[-1]) / 1024, wall, seen


def run_llama(bench, gguf, p, n, reps, extra):
    cmd = [bench, "-m", gguf, "-p", str(p), "-n", str(n), "-t", str(THREADS), "-r", str(reps),
           "-o", "json", "--progress", *extra]
    out, _, rss, wall, load = timed(cmd, watch="warmup")
    tests = json.loads(out)
    pp = next(t for t in tests if t["n_prompt"] > 0 and t["n_gen"] == 0)
    tg = next(t for t in tests if t["n_gen"] > 0 and t["n_prompt"] == 0)
    return {"prompt": p, "pp": (pp["avg_ts"], pp["stddev_ts"]), "gen": n,
            "tg": (tg["avg_ts"], tg["stddev_ts"]), "load_s": load, "wall_s": wall,
            "rss_mb": rss, "info": tests[0]}


def run_precis(precis, gguf, article, n):
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), HF_HUB_OFFLINE="1")
    out, err, rss, wall, _ = timed(
        [precis, "summarize", "--summary-model", gguf, "--engine", "llm", "--max-new-tokens",
         str(n), "--repeat-penalty", "1", "--format", "json", "-v", article], env=env)
    report = json.loads(out)
    t = report["timings"]
    load = next((float(m.group(1)) for line in err
                 if (m := re.search(r"summary model .* loaded in ([0-9.]+) s", line))), None)
    g = report["generated_tokens"]
    return {"prompt": report["prompt_tokens"], "gen": g, "stop": report.get("stop"),
            "pp": report["prompt_tokens"] / (t["prefill_ms"] / 1000),
            "tg": (g - 1) / (t["generate_ms"] / 1000) if g > 1 else float("nan"),
            "load_s": load, "wall_s": wall, "rss_mb": rss, "timing_keys": sorted(t)}


def child(model_dir, dtype, prompt_path, n):
    """Runs inside a fresh process: transformers load, generate, report JSON on stdout."""
    import torch
    t0 = time.perf_counter()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(THREADS)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype={"bf16": torch.bfloat16, "f32": torch.float32}[dtype]).eval()
    t1 = time.perf_counter()
    prompt = open(prompt_path, encoding="utf-8").read()
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]

    class Stamps:  # generate() calls put() with the prompt, then with each new token
        def __init__(self):
            self.times = []

        def put(self, value):
            self.times.append(time.perf_counter())

        def end(self):
            pass

    stamps = Stamps()
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                             min_new_tokens=n, do_sample=False, temperature=None, top_p=None,
                             top_k=None, repetition_penalty=1.0, streamer=stamps,
                             pad_token_id=tok.pad_token_id or 151643)
        end = time.perf_counter()
    gen = out.shape[1] - ids.shape[1]
    first = stamps.times[1]
    print(json.dumps({"load_s": t1 - t0, "prompt": ids.shape[1], "gen": gen,
                      "prefill_s": first - start, "generate_s": end - first}))


def run_transformers(model_dir, dtype, prompt_path, n):
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRANSFORMERS_VERBOSITY="error")
    out, _, rss, wall, _ = timed(
        [sys.executable, __file__, "--model-dir", model_dir, "--child", dtype, prompt_path,
         str(n)], env=env)
    r = json.loads(out.strip().splitlines()[-1])
    return {"prompt": r["prompt"], "gen": r["gen"], "pp": r["prompt"] / r["prefill_s"],
            "tg": (r["gen"] - 1) / r["generate_s"], "load_s": r["load_s"], "wall_s": wall,
            "rss_mb": rss}


def summarize_runs(runs):
    """Mean ± sd of the rates, mean of the times, max of the RSS, the token counts seen."""
    def ms(key):
        vals = [r[key] for r in runs if r[key] is not None]
        if not vals:
            return (float("nan"), 0.0)
        return (statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0)
    return {"prompt": "/".join(sorted({str(r["prompt"]) for r in runs})),
            "gen": "/".join(str(r["gen"]) for r in runs),
            "pp": ms("pp"), "tg": ms("tg"), "load_s": ms("load_s")[0],
            "wall_s": ms("wall_s")[0], "rss_mb": max(r["rss_mb"] for r in runs)}


def row(tool, weights, r):
    load = "n/a" if r["load_s"] is None else f"{r['load_s']:.2f}"
    return (f"| {tool} | {weights} | {r['prompt']} | {r['pp'][0]:.1f} ± {r['pp'][1]:.1f} | "
            f"{r['gen']} | {r['tg'][0]:.2f} ± {r['tg'][1]:.2f} | {load} | "
            f"{r['wall_s']:.1f} | {r['rss_mb']:.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", default=DEFAULT_DIR)
    ap.add_argument("--precis", default="target/release/precis")
    ap.add_argument("--llama-bench", help="path to llama.cpp's llama-bench")
    ap.add_argument("--llama-args", default="", help="extra llama-bench arguments")
    ap.add_argument("--quants", default="q4_k_m,q8_0")
    ap.add_argument("--tools", default="llama.cpp,precis")
    ap.add_argument("--transformers", action="store_true",
                    help="also run transformers (PyTorch) on model.safetensors")
    ap.add_argument("--transformers-dtypes", default="bf16,f32")
    ap.add_argument("--prompt-tokens", type=int, default=800)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("-r", "--repetitions", type=int, default=3)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        dtype, prompt_path, n = args.child
        return child(args.model_dir, dtype, prompt_path, int(n))
    tools = args.tools.split(",")
    if "llama.cpp" in tools and not args.llama_bench:
        sys.exit("--llama-bench PATH is needed for llama.cpp (or --tools precis)")
    quants = args.quants.split(",")
    for q in quants:
        if not os.path.exists(gguf_path(args.model_dir, q)):
            sys.exit(f"missing {gguf_path(args.model_dir, q)} (see this script's header)")

    work = tempfile.mkdtemp(prefix="precis-bench-summarize-")
    article, _, p = make_article(args.precis, gguf_path(args.model_dir, quants[0]),
                                 args.prompt_tokens, work)
    prompt_path = os.path.join(work, "prompt.txt")
    n, reps = args.gen_tokens, args.repetitions
    if abs(p - args.prompt_tokens) > 0.05 * args.prompt_tokens:
        print(f"warning: the prompt has {p} tokens, not about {args.prompt_tokens} (the "
              "instructions and chat template alone take about 340)", file=sys.stderr)
    print(f"article {article}: {p} prompt tokens (precis), {n} new tokens, {THREADS} threads, "
          f"{reps} repetitions\n", flush=True)

    rows, notes = [], []
    for q in quants:
        gguf = gguf_path(args.model_dir, q)
        for tool in tools:
            if tool == "llama.cpp":
                r = run_llama(args.llama_bench, gguf, p, n, reps, shlex.split(args.llama_args))
                info = r["info"]
                note = (f"llama-bench build {info.get('build_commit')} "
                        f"({info.get('build_number')}), {info.get('cpu_info')}")
                if note not in notes:
                    notes.append(note)
                r["gen"] = str(n)
            elif tool == "precis":
                runs = [run_precis(args.precis, gguf, article, n) for _ in range(reps)]
                short = [x for x in runs if x["gen"] < n]
                if short:
                    notes.append(f"precis {q}: stopped at EOS before {n} tokens in "
                                 f"{len(short)}/{reps} runs (precis has no ignore-EOS option)")
                if any(x["load_s"] is None for x in runs):
                    notes.append("precis: no 'loaded in' line in the -v log: load s n/a")
                notes.append(f"precis timings keys: {runs[0]['timing_keys']}")
                r = summarize_runs(runs)
            else:
                sys.exit(f"unknown tool {tool}")
            rows.append(row(tool, q, r))
            print(rows[-1], file=sys.stderr, flush=True)
    if args.transformers:
        for dtype in args.transformers_dtypes.split(","):
            runs = [run_transformers(args.model_dir, dtype, prompt_path, n) for _ in range(reps)]
            rows.append(row("transformers", f"{dtype} safetensors",
                            summarize_runs(runs)))
            print(rows[-1], file=sys.stderr, flush=True)

    print("| tool | weights | prompt tokens | prompt tokens/s | generated tokens | "
          "generation tokens/s | load s | process s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print()
    for note in dict.fromkeys(notes):
        print(f"- {note}")


if __name__ == "__main__":
    main()
