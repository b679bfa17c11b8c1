"""Time a recurrent layer and a self-attention layer, forward + backward, against CPU threads (and on CUDA).

    python bench/parallel.py            # make parallel: threads 1 .. os.cpu_count(), CUDA when present
    python bench/parallel.py --threads 1 2 --rounds 1 --repeats 2 --out /tmp/parallel   # a pilot

The layers are those of notebook 09 (``experiments.complexity``, ``PARALLEL_KINDS``): PyTorch's
``nn.RNN`` (tanh) and ``nn.GRU``, whose loops over time run in C++, and the course's own
``MultiHeadAttention`` (4 heads) as self-attention; all with d_model = 256, at B = 32, n = 512,
in float32. One pass is the forward pass and the backward pass of the outputs' sum (the
gradients of the input and of every weight).

Each thread count runs in a fresh Python process that fixes its threads before any work
(``OMP_NUM_THREADS`` and ``torch.set_num_threads``): a thread pool, once started, does not
shrink reliably. In it every layer runs once to warm up, then ``--repeats`` passes go round the
layers in turn, so that a burst of load from another program hits all of them alike; the sweep
over thread counts itself runs ``--rounds`` times. Times are wall-clock (with several threads
working, one thread's CPU time says nothing). The table gives the median and the range of all
the passes, and the speed-up median T(1) / median T(P). With CUDA available, the same passes
run on the GPU too (one process, its default settings) and are stored beside the CPU's.

Also stored, for notebook 09's work-depth model: the FLOPs of one pass (``FlopCounterMode``) and
its critical path and sequential steps (``OperatorTrace``), with a hash of the source measured:
``tests/test_bench_parallel.py`` fails when the hash no longer matches the code.
Writes bench/parallel.md (for people) and bench/parallel.json (for the notebook).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "parallel.json"
TABLE = ROOT / "bench" / "parallel.md"
CONFIG = {"batch": 32, "n": 512, "d_model": 256}  # the size the issue asks for (--batch, --n, --d-model)
PROBE = {"batch": 1, "d_model": 16}  # the same n with almost no work: what remains is latency
N_HEADS = 4
LABELS = {"rnn": "nn.RNN (tanh)", "gru": "nn.GRU", "attention": "MultiHeadAttention (the course's, 4 heads)"}


def default_threads(cores: int | None = None) -> list[int]:
    """1 .. the number of cores; above 8 cores, the powers of 2 and the number of cores."""
    cores = cores or os.cpu_count() or 1
    if cores <= 8:
        return list(range(1, cores + 1))
    return sorted({2**i for i in range(cores.bit_length()) if 2**i <= cores} | {cores})


def source_hash() -> str:
    """A hash of the code the table measured: this script, the course's multi-head attention and
    the functions of experiments.complexity and measure that build, run, count and trace the layers
    (PyTorch's own nn.RNN and nn.GRU are named by the torch version the JSON records)."""
    from transformer_course import attention as A
    from transformer_course import measure
    from transformer_course.experiments import complexity as C

    measured = (A.MultiHeadAttention, A.split_heads, A.merge_heads, A.scaled_dot_product_attention,
                A.masked_softmax, C.make_layer, C.layer_forward, C._input, C.forward_backward_pass,
                C.count_flops, C.trace_layer, C._trace, measure.OperatorTrace, measure.sync)
    parts = [Path(__file__).read_text(encoding="utf-8")] + [inspect.getsource(f) for f in measured]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def sizes(config: dict[str, int]) -> dict[str, dict[str, int]]:
    """The two sizes timed: "main" (B, n, d_model as configured) and "probe" (B = 1, d_model = 16)."""
    return {"main": dict(config), "probe": {**config, **PROBE}}


def time_layers(kinds: list[str], repeats: int, device: str, config: dict[str, int]) -> dict[str, dict]:
    """Seconds of each pass at both sizes: each once to warm up, then ``repeats`` rounds over all."""
    from transformer_course.experiments.complexity import forward_backward_pass
    from transformer_course.measure import sync

    runs = {(size, k): forward_backward_pass(k, c["n"], c["d_model"], c["batch"], N_HEADS, device=device)
            for size, c in sizes(config).items() for k in kinds}
    for run in runs.values():
        run()  # warm-up: the first pass pays for allocation (and, on CUDA, for choosing kernels)
    seconds: dict[str, dict[str, list[float]]] = {size: {k: [] for k in kinds} for size in sizes(config)}
    for _ in range(repeats):
        for (size, kind), run in runs.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            seconds[size][kind].append(time.perf_counter() - start)
    return seconds


def _worker(args: argparse.Namespace) -> None:
    """One process: fix the threads, time the layers, print the result as JSON."""
    import torch

    if args.device == "cpu":
        torch.set_num_threads(args.threads)
    seconds = time_layers(args.kinds, args.repeats, args.device, _config(args))
    print(json.dumps({"threads": torch.get_num_threads(), "seconds": seconds}))


def _spawn(device: str, threads: int, args: argparse.Namespace) -> dict:
    """Run ``_worker`` in a fresh process with ``threads`` threads; its parsed result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--device", device,
               "--threads", str(threads), "--repeats", str(args.repeats), "--kinds", *args.kinds,
               *(f"--{k.replace('_', '-')}={v}" for k, v in _config(args).items())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {device} worker with {threads} threads failed:\n{done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if device == "cpu" and result["threads"] != threads:
        raise RuntimeError(f"asked for {threads} threads, the worker ran with {result['threads']}")
    return result


def _config(args: argparse.Namespace) -> dict[str, int]:
    return {k: getattr(args, k) for k in CONFIG}


def sweep(args: argparse.Namespace) -> dict:
    """The timings: per round, one process per thread count (and one on CUDA when present)."""
    import torch

    names = sizes(_config(args))
    cpu = {size: {k: [[] for _ in args.threads] for k in args.kinds} for size in names}
    cuda = {size: {k: [] for k in args.kinds} for size in names} \
        if torch.cuda.is_available() and not args.no_cuda else None
    for r in range(args.rounds):
        for i, threads in enumerate(args.threads):
            start = time.perf_counter()
            result = _spawn("cpu", threads, args)
            for size in names:
                for kind in args.kinds:
                    cpu[size][kind][i] += result["seconds"][size][kind]
            main = result["seconds"]["main"]
            medians = [f"{k} {1e3 * statistics.median(t):.0f} ms" for k, t in main.items()]
            print(f"round {r + 1}/{args.rounds}, {threads} thread(s): {', '.join(medians)} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        if cuda is not None:
            result = _spawn("cuda", 1, args)
            for size in names:
                for kind in args.kinds:
                    cuda[size][kind] += result["seconds"][size][kind]
    return {"cpu": {"threads": args.threads, "seconds": cpu},
            "cuda": None if cuda is None else {"device": torch.cuda.get_device_name(), "seconds": cuda}}


def work_and_depth(kinds: list[str], config: dict[str, int]) -> dict[str, dict[str, dict]]:
    """Per size and layer: the FLOPs of one pass (counted at that size) and its traced depth.

    The trace runs at d_model <= 32 and batch <= 2: its counts depend on n only (and on whether
    the batch is 1, which saves attention a few copies).
    """
    from transformer_course.experiments.complexity import count_flops, trace_layer

    out: dict[str, dict[str, dict]] = {}
    for size, c in sizes(config).items():
        out[size] = {}
        for kind in kinds:
            trace = trace_layer(kind, c["n"], min(c["d_model"], 32), min(c["batch"], 2), N_HEADS,
                                backward=True)
            out[size][kind] = {
                "flops": count_flops(kind, c["n"], c["d_model"], c["batch"], N_HEADS, backward=True),
                "critical_path": trace["critical_path"], "sequential_steps": trace["sequential_steps"],
                "operators": trace["operators"]}
    return out


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo", encoding="utf-8")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"system": f"{platform.system()} {platform.machine()}", "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def summarise(seconds: list[float]) -> dict[str, float]:
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds)}


def table(results: dict) -> str:
    """bench/parallel.md: per size, layer and thread count, median and range, speed-up and GFLOP/s."""
    m, c, cpu, cuda = results["machine"], results["config"], results["cpu"], results["cuda"]
    load = results["load_average"]
    lines = ["# One layer, forward + backward, against the number of threads", "",
             f"Written by `{results['command']}` (bench/parallel.py) in {results['seconds_taken']:.0f} s on: "
             f"{m['system']}, {m['cpu']}, {m['cores']} cores, Python {m['python']}, torch {m['torch']}"
             f"{', ' + m['gpu'] if m['gpu'] else ', no GPU'}. "
             f"Load average (1 min) {load['before']:.2f} before, {load['after']:.2f} after.",
             f"float32, d_model = {c['d_model']}, {c['rounds']} rounds of {c['repeats']} passes per thread "
             "count, each thread count in a fresh process; wall-clock time; "
             "speed-up = median T(1) / median T(P). The probe: the same layers at B = 1, d_model = "
             f"{PROBE['d_model']}, almost no work, so its time is latency.", "",
             f"Source hash (a test compares it): `{results['hash']}`", "",
             "| size | layer | device | threads | median (ms) | min - max (ms) | speed-up | GFLOP/s | "
             "critical path (operators) |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for size, config in sizes({k: c[k] for k in CONFIG}).items():
        shape = f"{size}: B={config['batch']}, n={config['n']}, d={config['d_model']}"
        for kind, runs in cpu["seconds"][size].items():
            one = statistics.median(runs[0])
            work = results["work"][size][kind]
            rows = [("cpu", threads, s) for threads, s in zip(cpu["threads"], runs, strict=True)]
            rows += [(cuda["device"], "-", cuda["seconds"][size][kind])] if cuda else []
            for device, threads, s in rows:
                t = summarise(s)
                lines.append(f"| {shape} | {LABELS[kind]} | {device} | {threads} | {1e3 * t['median']:.2f} | "
                             f"{1e3 * t['min']:.2f} - {1e3 * t['max']:.2f} | {one / t['median']:.2f} | "
                             f"{work['flops'] / t['median'] / 1e9:.1f} | {work['critical_path']:,} |")
    if not cuda:
        lines += ["", "No CUDA device on this machine: no GPU rows (the script adds them where "
                  "`torch.cuda.is_available()`; their speed-up is over one CPU thread)."]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    from transformer_course.experiments.complexity import PARALLEL_KINDS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="*", type=int, help="thread counts (default: 1 .. cores)")
    parser.add_argument("--rounds", type=int, default=3, help="sweeps over the thread counts (default 3)")
    parser.add_argument("--repeats", type=int, default=3, help="passes per layer in each process (default 3)")
    parser.add_argument("--kinds", nargs="*", default=list(PARALLEL_KINDS), choices=PARALLEL_KINDS)
    parser.add_argument("--no-cuda", action="store_true", help="time the CPU only")
    parser.add_argument("--out", type=Path, help="write parallel.md and parallel.json here instead (a pilot)")
    for key, value in CONFIG.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=value, help=f"default {value}")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.worker:
        args.threads = args.threads[0]
        _worker(args)
        return 0
    args.threads = args.threads or default_threads()
    if _config(args) != CONFIG and args.out is None:
        raise SystemExit("a run at another size needs --out: the committed table is at the default size")
    start, before = time.perf_counter(), os.getloadavg()[0]
    timings = sweep(args)
    results = {"hash": source_hash(),
               "command": "python bench/parallel.py" + (" " + " ".join(argv) if argv else ""),
               "machine": machine(), "load_average": {"before": before, "after": os.getloadavg()[0]},
               "config": {**_config(args), "n_heads": N_HEADS, "probe": PROBE, "rounds": args.rounds,
                          "repeats": args.repeats, "dtype": "float32",
                          "layers": {k: LABELS[k] for k in args.kinds}},
               "work": work_and_depth(args.kinds, _config(args)), **timings,
               "seconds_taken": round(time.perf_counter() - start, 1)}
    out = args.out or RESULTS.parent
    out.mkdir(parents=True, exist_ok=True)
    (out / RESULTS.name).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / TABLE.name).write_text(table(results), encoding="utf-8")
    print(table(results))
    print(f"wrote {out / TABLE.name} and {out / RESULTS.name} in {results['seconds_taken']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
