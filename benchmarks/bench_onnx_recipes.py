"""Every ONNX recipe on one checkpoint, in one run: size, AP, ΔAP vs PyTorch fp32, ORT latency.

For each built-in recipe the ONNX target supports (or ``--recipes``; int8_qat, which fine-tunes
the model, only when named there): build it (reusing an artifact in OUT whose sidecar has the
same cache key), evaluate it on ``--split`` with onnxruntime, and compare its per-sample scores
with PyTorch fp32's on the same samples (paired bootstrap 95 % CI of ΔmAP, raw and boosted).
Latency is onnxruntime at batch 1 with ``--threads`` threads on one real preprocessed sample; all
models are timed in interleaved rounds in this one process, so load from other processes on a
shared machine hits every model alike and the ratios hold even when the absolute figures drift.
Then int8_static (and its variant int8_static_float_outputs) is checked against the goals:
size <= 0.28 x fp32, ΔAP >= -0.5 points, ORT latency <= 0.6 x ORT fp32.

    python benchmarks/bench_onnx_recipes.py CKPT --data DIR [--out DIR] [--split test]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from bench_common import ci, reference_header, score_against_reference

GOALS = {"size_ratio": 0.28, "delta_ap_points": -0.5, "latency_ratio": 0.6}


def build_all(args, recipes: list[str]) -> dict[str, Path]:
    """Build (or reuse, by cache key) every recipe; returns recipe -> artifact."""
    from selinet_compress.io import read_sidecar, sha256_file
    from selinet_compress.targets import artifact_path, cache_key, quantize

    checkpoint_sha = sha256_file(args.checkpoint)
    built = {}
    for name in recipes:
        path = artifact_path(args.out, name, "onnx")
        sidecar = read_sidecar(path) if path.is_file() else None
        key = cache_key(args.checkpoint, name, "onnx", args.data, checkpoint_sha)
        if sidecar is not None and sidecar.get("cache_key") == key:
            print(f"[{name}] reusing {path} (same cache key)", file=sys.stderr)
        else:
            started = time.perf_counter()
            path = quantize(
                args.checkpoint,
                name,
                "onnx",
                args.data,
                args.out,
                cache_dir=args.out / "cache",
                force=True,
                progress=not args.quiet,
            )
            print(f"[{name}] built in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        built[name] = path
    return built


def latencies(models: dict[str, Path], sample: dict, threads: int, rounds: int, runs: int) -> dict[str, dict]:
    """p50 / p90 ms per model, measured in interleaved rounds (see module docstring)."""
    from selinet_compress.bench import interleaved_latency
    from selinet_compress.runtimes import open_runner

    calls = {}
    for name, path in models.items():
        runner = open_runner(path, threads=threads)
        inputs = {n: sample[n] for n in runner.input_names}
        calls[name] = lambda runner=runner, inputs=inputs: runner.run(inputs)
    return interleaved_latency(calls, rounds, runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench_onnx_recipes"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N samples only")
    parser.add_argument("--recipes", default=None, help="comma-separated names or YAML paths (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10, help="interleaved latency rounds")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model per round")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument(
        "--goal-recipes",
        default="int8_static,int8_static_float_outputs",
        help="recipes checked against the int8_static goals",
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()

    from selinet_compress.emotic import iterate_batches, open_split
    from selinet_compress.environment import environment
    from selinet_compress.errors import UserError
    from selinet_compress.evaluate import evaluate
    from selinet_compress.io import sha256_file
    from selinet_compress.recipes import list_recipes, load_recipe
    from selinet_compress.targets import TARGETS

    try:
        if args.recipes:
            recipes = [
                load_recipe(r).name if not r.endswith((".yaml", ".yml")) else r
                for r in args.recipes.split(",")
            ]
        else:
            # QAT fine-tunes the model (minutes to hours on a CPU): only when asked for by name.
            onnx_target = TARGETS.get("onnx")()
            recipes = [
                r.name
                for r in list_recipes()
                if r.precision != "int8_qat" and onnx_target.supports(r) is None
            ]
        if "fp32" not in recipes:
            recipes.insert(0, "fp32")  # the ratios' denominator
        models = build_all(args, recipes)
        names = {r: load_recipe(r).name for r in recipes}

        progress = not args.quiet
        reference = evaluate(
            args.checkpoint, args.data, args.split, limit=args.limit, threads=args.threads, progress=progress
        )
        results = {}
        for recipe, path in models.items():
            results[recipe] = score_against_reference(path, reference, args, progress)
        split = open_split(args.data, args.split)
        config = results["fp32"]["sidecar"]["model_config"]
        from selinet_compress.model.selinet import SeLiNetConfig

        sample = next(iterate_batches(split, 1, SeLiNetConfig.from_dict(config)))
        timing = latencies(models, sample, args.threads, args.rounds, args.runs)
        load_during = os.getloadavg()[0]
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    fp32 = results["fp32"]
    checkpoint_sha = sha256_file(args.checkpoint)[:12]
    lines = [
        f"checkpoint {args.checkpoint} (sha256 {checkpoint_sha}), {args.split} split of {args.data}: "
        f"{reference.n} persons; PyTorch fp32 mAP raw {100 * reference.metrics['map']:.2f}, "
        f"boosted {100 * reference.metrics['map_boosted']:.2f}",
        "",
        "| recipe | size MB | size ratio | mAP raw | mAP boosted | ΔAP raw vs PyTorch fp32 (95 % CI) "
        "| ΔAP boosted (95 % CI) | ORT p50 ms | ORT min ms | latency ratio (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    for recipe in recipes:
        r, t = results[recipe], timing[recipe]
        size_ratio = r["size_mb"] / fp32["size_mb"]
        lines.append(
            f"| {names[recipe]} | {r['size_mb']:.2f} | {size_ratio:.3f} | {100 * r['map']:.2f} "
            f"| {100 * r['map_boosted']:.2f} | {ci(r['delta_raw'])} | {ci(r['delta_boosted'])} "
            f"| {t['p50_ms']:.2f} | {t['min_ms']:.2f} | {t['p50_ms'] / timing['fp32']['p50_ms']:.2f} |"
        )
    env = environment("onnxruntime", "onnx", "torch", "numpy")
    cpu = env["cpu"]
    lines += [
        "",
        f"latency: onnxruntime {env['versions']['onnxruntime']} CPU, batch 1, {args.threads} threads, "
        f"{args.rounds} interleaved rounds x {args.runs} runs per model; {cpu['model']} "
        f"({cpu['logical_cores']} logical cores; {' '.join(cpu['flags'])}); load average during the timing "
        f"{load_during:.1f} (a shared machine: absolute ms are noisy, ratios are what counts). "
        f"ΔAP in points, paired bootstrap ({args.bootstrap} resamples) against PyTorch fp32 on the same "
        "persons.",
    ]

    goal_lines, goals = [], {}
    for recipe in recipes:
        if names[recipe] not in args.goal_recipes.split(","):
            continue
        r = results[recipe]
        figures = {
            "size_ratio": r["size_mb"] / fp32["size_mb"],
            "delta_ap_points": 100 * min(r["delta_raw"][0], r["delta_boosted"][0]),
            "latency_ratio": timing[recipe]["p50_ms"] / timing["fp32"]["p50_ms"],
        }
        checks = {
            "size_ratio": figures["size_ratio"] <= GOALS["size_ratio"],
            "delta_ap_points": figures["delta_ap_points"] >= GOALS["delta_ap_points"],
            "latency_ratio": figures["latency_ratio"] <= GOALS["latency_ratio"],
        }
        goals[names[recipe]] = {"figures": figures, "met": checks}
        goal_lines.append("")
        goal_lines.append(f"{names[recipe]} against the int8_static goals (ratios from this run):")
        goal_lines.append(
            f"- size {figures['size_ratio']:.3f} x fp32 (goal <= {GOALS['size_ratio']}): "
            f"{'met' if checks['size_ratio'] else 'MISSED'}"
        )
        goal_lines.append(
            f"- ΔAP {figures['delta_ap_points']:+.2f} points, the worse of raw / boosted (goal >= "
            f"{GOALS['delta_ap_points']}): {'met' if checks['delta_ap_points'] else 'MISSED'}"
        )
        goal_lines.append(
            f"- ORT latency {figures['latency_ratio']:.2f} x ORT fp32 (goal <= {GOALS['latency_ratio']}):"
            f" {'met' if checks['latency_ratio'] else 'MISSED'}"
        )
        audit = r["sidecar"]["audit"]
        if not checks["delta_ap_points"]:
            agreement = r["sidecar"]["agreement_vs_pytorch"]["outputs"]
            goal_lines.append(
                "  why: int8 drift on the check samples (centered cosine vs PyTorch: "
                + ", ".join(f"{k} {v['centered_cosine']:.4f}" for k, v in agreement.items())
                + "); see per-branch sensitivity (keep_float_modules) to locate it"
            )
        if not checks["latency_ratio"]:
            goal_lines.append(
                f"  why: {audit['runtime']['int8_kernels']} int8 kernels, left in float at run time: "
                f"{audit['runtime']['float_ops']}; absolute figures on this shared machine: "
                f"{timing[recipe]['p50_ms']:.2f} vs {timing['fp32']['p50_ms']:.2f} ms"
            )
    print("\n".join(lines + goal_lines))
    if args.json:
        from selinet_compress.io import write_json_atomic

        write_json_atomic(
            args.json,
            {
                **reference_header(args, reference),
                "recipes": {
                    names[r]: {k: v for k, v in results[r].items() if k != "sidecar"} | {"latency": timing[r]}
                    for r in recipes
                },
                "goals": goals,
                "environment": env,
                "table": lines + goal_lines,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
