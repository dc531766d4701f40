"""Peak resident memory of ``selinet-compress evaluate`` on synthetic array sets of two sizes.

Memory must not grow with the split: the arrays are memory-mapped and read a batch at a time,
and the pages each batch touched are released. Each evaluation runs in a fresh process (the CLI,
as a user runs it) whose peak RSS is read from ``getrusage`` by a small wrapper process, so one
measurement cannot inherit another's peak. The sets are generated first (not timed).

    python benchmarks/bench_evaluate_memory.py                      # 1,000 and 4,000, paper-size model
    python benchmarks/bench_evaluate_memory.py --config small       # 64 px inputs: ~10x less compute

Prints one row per size and the difference; the goal is a difference below 200 MB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Runs a command and prints the peak RSS (kB on Linux) of the processes it waited for.
WRAPPER = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(command: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    parser.add_argument(
        "--config",
        choices=["full", "small"],
        default="full",
        help="full: the paper's model (128/224 px); small: 64 px inputs, same network",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="keep the sets here (default: a temp dir)"
    )
    args = parser.parse_args()

    from selinet_compress.checkpoint import init_checkpoint
    from selinet_compress.emotic.synth import generate
    from selinet_compress.model.selinet import SeLiNetConfig

    with tempfile.TemporaryDirectory(prefix="bench_memory_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        config = SeLiNetConfig() if args.config == "full" else SeLiNetConfig(body_size=64, context_size=64)
        checkpoint = init_checkpoint(work / f"{args.config}.pt", config, seed=0)
        rows = []
        for n in args.sizes:
            data = work / f"test_{n}"
            if not (data / "test_context_arr.npy").exists():
                started = time.perf_counter()
                generate(data, "arrays", {"train": 0, "val": 0, "test": n}, seed=0, force=True)
                print(f"generated {n} persons in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            file_mb = sum(p.stat().st_size for p in data.glob("test_*_arr.npy")) / 1e6
            result = work / f"result_{n}.json"
            command = [
                sys.executable,
                "-m",
                "selinet_compress.cli",
                "evaluate",
                str(checkpoint),
                "--data",
                str(data),
                "--batch-size",
                str(args.batch_size),
                "--workers",
                str(args.workers),
                "--threads",
                str(args.threads),
                "--json",
                str(result),
            ]
            started = time.perf_counter()
            peak = peak_rss_mb(command)
            seconds = time.perf_counter() - started
            evaluated = json.loads(result.read_text())["n"]
            rows.append((n, evaluated, file_mb, peak, seconds))

    print(
        f"evaluate peak RSS ({args.config} model, batch {args.batch_size}, workers {args.workers}, "
        f"threads {args.threads})"
    )
    print(f"{'persons':>8} {'evaluated':>10} {'arrays MB':>10} {'peak RSS MB':>12} {'seconds':>8}")
    for n, evaluated, file_mb, peak, seconds in rows:
        print(f"{n:>8} {evaluated:>10} {file_mb:>10.0f} {peak:>12.1f} {seconds:>8.1f}")
    if len(rows) >= 2:
        difference = rows[-1][3] - rows[0][3]
        verdict = "ok" if difference < 200 else "TOO MUCH"
        print(
            f"difference {rows[-1][0]} vs {rows[0][0]} persons: {difference:+.1f} MB "
            f"(goal < 200 MB: {verdict})"
        )


if __name__ == "__main__":
    main()
