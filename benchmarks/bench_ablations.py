"""Train every Table III ablation config the same way and print their test mAP in one table.

Informative only: on the synthetic set it shows that each configuration trains and how the
branches contribute *there*; it is not a claim about EMOTIC. Every row starts from scratch with
the same seed, data, schedule and budget (``--epochs``, ``--limit-train``), so the rows differ only
in the model. Also prints a random-init model's test mAP: the floor every row must clear.

    python benchmarks/bench_ablations.py --data DIR [--epochs 2] [--limit-train 1000] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_ablations"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--optimizer", default="adamw", choices=["sgd", "adamw"])
    parser.add_argument("--augment", action="store_true", help="the paper's augmentation (off: see README)")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--limit-train", type=int, default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate
    from selinet_compress.model.selinet import ABLATIONS, PAPER_SIZE_MB, build_model, config_for_ablation
    from selinet_compress.runtimes.torch_runner import TorchRunner
    from selinet_compress.train import TrainConfig, train

    config = TrainConfig(
        epochs=args.epochs,
        lr=args.lr,
        lr_step=max(args.epochs - 1, 1),
        optimizer=args.optimizer,
        augment=args.augment,
        bf16=args.bf16,
        limit_train=args.limit_train,
    )
    rows = []
    try:
        untrained = TorchRunner.from_model(build_model(seed=0))
        floor = evaluate(None, args.data, split=args.split, progress=False, runner=untrained)
        for name in ABLATIONS:
            started = time.perf_counter()
            result = train(
                args.data,
                args.out / f"{name}.pt",
                config,
                model_config=config_for_ablation(name),
                force=True,
                progress=False,
                log=lambda line: None,
            )
            scored = evaluate(result.best, args.data, split=args.split, progress=False)
            rows.append(
                {
                    "config": name,
                    "paper_mb": PAPER_SIZE_MB[name],
                    "val_map": result.best_map,
                    "test_map": scored.metrics["map"],
                    "test_map_boosted": scored.metrics.get("map_boosted"),
                    "seconds": time.perf_counter() - started,
                }
            )
            print(f"[{name}] test mAP {scored.metrics['map'] * 100:.2f}", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    samples = "all" if args.limit_train is None else args.limit_train
    lines = [
        f"Table III configs, each trained from scratch: {args.epochs} epochs, {samples} train samples, "
        f"{args.optimizer} lr {args.lr}, augment {args.augment}; {args.split} split, n={floor.n} "
        "(synthetic: informative only)",
        "",
        "| config | paper MB | val mAP | test mAP | test mAP boosted | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        boosted = "n/a" if r["test_map_boosted"] is None else f"{r['test_map_boosted'] * 100:.2f}"
        lines.append(
            f"| {r['config']} | {r['paper_mb']:.2f} | {r['val_map'] * 100:.2f} | {r['test_map'] * 100:.2f} "
            f"| {boosted} | {r['seconds']:.0f} |"
        )
    lines.append(f"| random init (full, untrained) | | | {floor.metrics['map'] * 100:.2f} | | |")
    print("\n".join(lines))
    if args.json:
        from selinet_compress.io import write_json_atomic

        write_json_atomic(args.json, {"rows": rows, "random_init_map": floor.metrics["map"], "table": lines})
    return 0


if __name__ == "__main__":
    sys.exit(main())
