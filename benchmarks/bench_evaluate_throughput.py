"""Throughput of ``evaluate`` against the bare model forward on pre-loaded tensors.

Both use the same runner, batch size and threads; the bare loop only calls ``runner.run`` on
batches that were read and preprocessed beforehand, while ``evaluate`` also reads the arrays,
preprocesses, applies the sentiment boost and computes AP. The ratio evaluate / bare says how much
the input pipeline costs (goal >= 0.85); ``--workers`` > 0 overlaps loading with the model.
Rounds alternate bare and evaluate so that load from other processes hits both alike; the
median and the best round (the least disturbed, as timeit reports) are printed. The loading-only
line (read + preprocess, no model) shows how much headroom the input pipeline has.

    python benchmarks/bench_evaluate_throughput.py                  # 256 persons, batch 32
    python benchmarks/bench_evaluate_throughput.py --config small --samples 512
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--config",
        choices=["full", "small"],
        default="full",
        help="full: the paper's model (128/224 px); small: 64 px inputs, same network",
    )
    args = parser.parse_args()

    from selinet_compress.checkpoint import init_checkpoint
    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.emotic.synth import generate
    from selinet_compress.evaluate import evaluate
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.runtimes import open_runner

    with tempfile.TemporaryDirectory(prefix="bench_throughput_") as tmp:
        work = Path(tmp)
        data = generate(work / "data", "arrays", {"train": 0, "val": 0, "test": args.samples}, seed=0).path
        config = SeLiNetConfig() if args.config == "full" else SeLiNetConfig(body_size=64, context_size=64)
        runner = open_runner(init_checkpoint(work / "model.pt", config, seed=0), threads=args.threads)
        split = open_split(data, "test")
        preloaded = [
            {name: batch[name] for name in runner.input_names}
            for batch in iterate_batches(split, args.batch_size, runner.config)
        ]
        runner.run(preloaded[0])  # warm-up

        bare, loading, through = [], [], {w: [] for w in args.workers}
        for round_number in range(args.rounds):
            started = time.perf_counter()
            for _batch in iterate_batches(split, args.batch_size, runner.config):
                pass
            loading.append(args.samples / (time.perf_counter() - started))
            started = time.perf_counter()
            for inputs in preloaded:
                runner.run(inputs)
            bare.append(args.samples / (time.perf_counter() - started))
            for workers in args.workers:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # undefined AP of absent classes: irrelevant here
                    result = evaluate(
                        None, data, batch_size=args.batch_size, workers=workers, progress=False, runner=runner
                    )
                through[workers].append(result.throughput)
            print(
                f"round {round_number + 1}: bare {bare[-1]:.1f} samples/s, "
                + ", ".join(f"evaluate(workers={w}) {through[w][-1]:.1f}" for w in args.workers)
            )

    print(
        f"\n{args.config} model, {args.samples} samples, batch {args.batch_size}, {args.threads} threads, "
        f"{args.rounds} rounds"
    )
    print(f"{'loop':<24}{'median/s':>9}{'ratio':>7}{'best/s':>9}{'ratio':>7}")
    rows = {
        "bare forward": bare,
        **{f"evaluate workers={w}": v for w, v in through.items()},
        "loading only (no model)": loading,
    }
    for name, values in rows.items():
        median, best = statistics.median(values), max(values)
        median_ratio, best_ratio = median / statistics.median(bare), best / max(bare)
        print(f"{name:<24}{median:>9.1f}{median_ratio:>7.2f}{best:>9.1f}{best_ratio:>7.2f}")
    ratio = max(statistics.median(v) for v in through.values()) / statistics.median(bare)
    print(
        f"evaluate / bare (median, best workers setting): {ratio:.2f} (goal >= 0.85: "
        f"{'ok' if ratio >= 0.85 else 'BELOW'})"
    )


if __name__ == "__main__":
    main()
