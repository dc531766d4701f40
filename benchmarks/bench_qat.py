"""int8_qat against int8_static on one checkpoint: ΔAP vs PyTorch fp32, size, onnxruntime and LiteRT
latency, and what QAT costs in fine-tuning time.

For each target (``--targets``, default onnx and tflite) it builds fp32, int8_static and the QAT
recipe (``--qat-recipe``, default the built-in int8_qat), reusing an artifact in OUT whose sidecar
has the same cache key and the QAT run cached in OUT/cache (one fine-tuning serves both targets).
Every file is evaluated on ``--split`` with its own runtime and compared with PyTorch fp32 on the
same persons (paired bootstrap 95 % CI of ΔmAP, raw and boosted). Latency: batch 1, ``--threads``
threads, one real preprocessed sample; the files of one runtime are timed in interleaved rounds
in this process, so load from other processes on a shared machine hits them alike and the ratios
hold even when absolute figures drift. The QAT wall time is the fine-tuning loop as measured when
the run was made (with its thread count), taken from the artifact's sidecar.

Goal (issue 7): int8_qat within 0.3 AP points of fp32, or at least half of int8_static's drop
recovered: (ΔAP_qat - ΔAP_static) / -ΔAP_static >= 0.5, on the worse of raw / boosted mAP.

    python benchmarks/bench_qat.py CKPT --data DIR [--out DIR] [--split test] [--qat-recipe YAML]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import ci, reference_header, score_against_reference
from bench_onnx_recipes import latencies  # interleaved timing, shared with that benchmark

GOAL_POINTS = -0.3
GOAL_RECOVERED = 0.5


def build(args, recipe: str, target: str) -> tuple[Path, float | None]:
    """Build (or reuse by cache key) one artifact; returns it and the build seconds (None: reused)."""
    from selinet_compress.io import read_sidecar, sha256_file
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets import artifact_path, cache_key, quantize

    name = load_recipe(recipe).name
    path = artifact_path(args.out, name, target)
    key = cache_key(args.checkpoint, recipe, target, args.data, sha256_file(args.checkpoint))
    sidecar = read_sidecar(path) if path.is_file() else None
    if sidecar is not None and sidecar.get("cache_key") == key:
        print(f"[{name} {target}] reusing {path} (same cache key)", file=sys.stderr)
        return path, sidecar.get("bench_build_seconds")
    started = time.perf_counter()
    path = quantize(
        args.checkpoint,
        recipe,
        target,
        args.data,
        args.out,
        cache_dir=args.out / "cache",
        force=True,
        progress=not args.quiet,
    )
    seconds = round(time.perf_counter() - started, 1)
    print(f"[{name} {target}] built in {seconds:.0f} s", file=sys.stderr)
    return path, seconds


def shortened_recipe(args) -> str:
    """``--qat-recipe`` with the --qat-* overrides, written as a YAML in OUT (its name says so)."""
    import yaml

    from selinet_compress.recipes import load_recipe

    overrides = {
        k: v
        for k, v in {
            "epochs": args.qat_epochs,
            "limit_train": args.qat_limit_train,
            "limit_val": args.qat_limit_val,
            "lr": args.qat_lr,
        }.items()
        if v is not None
    }
    if not overrides:
        return args.qat_recipe
    data = load_recipe(args.qat_recipe).to_dict()
    sections = data.pop("sections")
    data["qat"] = {**sections.get("qat", {}), **overrides}
    data["name"] = f"{data['name']}_bench"
    data["description"] = f"{data['description']}; benchmark overrides {overrides}"
    path = args.out / f"{data['name']}.yaml"
    args.out.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


def qat_record(sidecar: dict) -> dict:
    """The QAT run's record (wall time, epochs, best epoch) from an ONNX or TFLite sidecar."""
    quantization = sidecar.get("quantization") or {}
    if "qat" in quantization:
        return quantization["qat"]
    return next((p for p in sidecar.get("passes", []) if p.get("pass") == "qat"), {})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_qat"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    parser.add_argument("--qat-recipe", default="int8_qat", help="name or YAML path of the QAT recipe")
    parser.add_argument("--qat-epochs", type=int, default=None, help="override the QAT recipe's epochs")
    parser.add_argument("--qat-limit-train", type=int, default=None, help="QAT samples per epoch")
    parser.add_argument("--qat-limit-val", type=int, default=None, help="QAT validation samples")
    parser.add_argument("--qat-lr", type=float, default=None, help="override the QAT learning rate")
    parser.add_argument("--static-recipe", default="int8_static", help="the recipe the goal compares with")
    parser.add_argument(
        "--also", default="int8_static_float_outputs", help="comma-separated recipes shown beside (no goal)"
    )
    parser.add_argument("--targets", default="onnx,tflite")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model per round")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.environment import environment
    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate
    from selinet_compress.io import sha256_file, write_json_atomic
    from selinet_compress.model.selinet import SeLiNetConfig
    from selinet_compress.recipes import load_recipe
    from selinet_compress.targets import unsupported_reason

    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.qat_recipe = shortened_recipe(args)
    also = [r.strip() for r in args.also.split(",") if r.strip()]
    recipes = ["fp32", args.static_recipe, *also, args.qat_recipe]
    label = {r: load_recipe(r).name for r in recipes}
    try:
        artifacts: dict[tuple[str, str], tuple[Path, float | None]] = {}
        skipped: dict[tuple[str, str], str] = {}
        for target in targets:
            for recipe in recipes:
                reason = unsupported_reason(recipe, target)
                if reason:
                    skipped[recipe, target] = reason
                    continue
                artifacts[recipe, target] = build(args, recipe, target)
        progress = not args.quiet
        reference = evaluate(
            args.checkpoint, args.data, args.split, limit=args.limit, threads=args.threads, progress=progress
        )
        results = {}
        for (recipe, target), (path, seconds) in artifacts.items():
            results[recipe, target] = score_against_reference(path, reference, args, progress) | {
                "build_seconds": seconds
            }
        config = SeLiNetConfig.from_dict(results["fp32", targets[0]]["sidecar"]["model_config"])
        sample = next(iterate_batches(open_split(args.data, args.split), 1, config))
        timing = {}
        for target in targets:
            models = {
                recipe: artifacts[recipe, target][0] for recipe in recipes if (recipe, target) in artifacts
            }
            for recipe, record in latencies(models, sample, args.threads, args.rounds, args.runs).items():
                timing[recipe, target] = record
        load_during = os.getloadavg()[0]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    def worse(r) -> float:
        return 100 * min(r["delta_raw"][0], r["delta_boosted"][0])

    qat_name = label[args.qat_recipe]
    first_qat = results[args.qat_recipe, targets[0]]["sidecar"]
    qat = qat_record(first_qat)
    lines = [
        f"checkpoint {args.checkpoint} (sha256 {sha256_file(args.checkpoint)[:12]}), {args.split} split of "
        f"{args.data}: {reference.n} persons; PyTorch fp32 mAP raw {100 * reference.metrics['map']:.2f}, "
        f"boosted {100 * reference.metrics['map_boosted']:.2f}",
        "",
        "| recipe | target | size MB | size ratio | mAP raw | ΔAP raw vs PyTorch fp32 (95 % CI) "
        "| ΔAP boosted (95 % CI) | p50 ms | latency ratio (p50) | time to build |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for target in targets:
        runtime = "onnxruntime" if target == "onnx" else "LiteRT"
        for recipe in recipes:
            if (recipe, target) in skipped:
                lines.append(f"| {label[recipe]} | {target} | unsupported: {skipped[recipe, target]} |")
                continue
            r, t = results[recipe, target], timing[recipe, target]
            fp32 = results["fp32", target]
            if recipe == args.qat_recipe:
                built = f"QAT fine-tuning {qat.get('wall_seconds', float('nan')) / 60:.1f} min"
            else:
                built = f"{r['build_seconds']:.0f} s" if r["build_seconds"] else "reused"
            size_ratio = r["size_mb"] / fp32["size_mb"]
            speed = t["p50_ms"] / timing["fp32", target]["p50_ms"]
            lines.append(
                f"| {label[recipe]} | {target} ({runtime}) | {r['size_mb']:.2f} | {size_ratio:.3f} "
                f"| {100 * r['map']:.2f} | {ci(r['delta_raw'])} | {ci(r['delta_boosted'])} "
                f"| {t['p50_ms']:.2f} | {speed:.2f} | {built} |"
            )
    env = environment("onnxruntime", "ai-edge-litert", "torch", "torchao", "numpy")
    cpu = env["cpu"]
    history = qat.get("history") or []
    lines += [
        "",
        f"QAT ({qat_name}): {len(history)} epoch(s), best epoch {qat.get('best_epoch')} by validation "
        f"mAP of the fake-quantized model ({100 * (qat.get('best_val_map_fake_quant') or 0):.2f}); "
        f"fine-tuning wall time {qat.get('wall_seconds')} s with {qat.get('threads')} torch threads; "
        f"options {qat.get('options')}.",
        f"latency: batch 1, {args.threads} threads, {args.rounds} interleaved rounds x {args.runs} runs "
        f"per file and runtime; {cpu['model']} ({cpu['logical_cores']} logical cores; "
        f"{' '.join(cpu['flags'])}); load average during the timing {load_during:.1f} (shared machine: "
        "ratios count, absolute ms are noisy). LiteRT latencies are this x86 CPU's (XNNPACK); phones "
        f"rank fp32 / int8 differently. ΔAP in points, paired bootstrap ({args.bootstrap} resamples) "
        "against PyTorch fp32 on the same persons.",
    ]
    goals = {}
    for target in targets:
        d_static, d_qat = worse(results[args.static_recipe, target]), worse(results[args.qat_recipe, target])
        recovered = (d_qat - d_static) / -d_static if d_static < 0 else None
        met = d_qat >= GOAL_POINTS or (recovered is not None and recovered >= GOAL_RECOVERED)
        goals[target] = {"delta_static": d_static, "delta_qat": d_qat, "recovered": recovered, "met": met}
        within = "yes" if d_qat >= GOAL_POINTS else "no"
        share = (
            f"share of static's drop recovered {recovered:.0%}"
            if recovered is not None
            else ("static lost nothing to recover")
        )
        lines.append(
            f"goal ({target}): {qat_name} ΔAP {d_qat:+.2f} vs {label[args.static_recipe]} {d_static:+.2f} "
            f"points (worse of raw / boosted); within {-GOAL_POINTS} of fp32: {within}; {share} "
            f"-> {'met' if met else 'MISSED'}"
        )
    print("\n".join(lines))
    if args.json:
        write_json_atomic(
            args.json,
            {
                **reference_header(args, reference),
                "skipped": {f"{label[r]}/{t}": why for (r, t), why in skipped.items()},
                "results": {
                    f"{label[r]}/{t}": {k: v for k, v in results[r, t].items() if k != "sidecar"}
                    | {"latency": timing[r, t]}
                    for r, t in results
                },
                "qat": qat,
                "goals": goals,
                "environment": env,
                "load_average": load_during,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
