"""Training throughput of the tiny model: tokens/s and peak memory, CPU and (if present) CUDA.

    .venv/bin/python bench/train_throughput.py [--steps 30] [--hidden-size 64] [--layers 2]
        [--batch-size 8] [--max-length 256] [--batching grouped|packed] [--threads 1]
        [--pad-to-multiple-of 8] [--cudnn-attention] [--data ALPACA_JSON] [--devices cpu,cuda]

Each measurement is a real `python -m runtime.train` child run through `TrainingProcess`, so it
times exactly what the TrainerAgent launches. tokens/s is the median over the step events after
the first two (warm-up); it counts real (non-padding) tokens, prompt and response. Peak memory:
the child's peak RSS on CPU (`getrusage(RUSAGE_CHILDREN)`), peak CUDA allocation on GPU (from the
step events). The CUDA run uses bf16 autocast when the GPU supports it. The rows are the first
`--rows` of the Alpaca file (`--data`; ../shared/data by default), or short synthetic rows when
it is missing. Prints a table and one JSON line per device.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import anyio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from agents.trainer.process import (  # noqa: E402
    LaunchSettings,
    StartEvent,
    StepEvent,
    TrainingProcess,
    write_shards,
)

ALPACA = Path("/work/shared/data/alpaca_data_subset5000_pr152.json")


def rows(n: int, source: Path) -> list[dict[str, str]]:
    if source.is_file():
        data = json.loads(source.read_text(encoding="utf-8"))[:n]
        return [
            {
                "id": str(i),
                "instruction": r["instruction"],
                "input": r["input"],
                "response": r["output"],
            }
            for i, r in enumerate(data)
        ]
    return [
        {
            "id": str(i),
            "instruction": f"Count to {i % 20}.",
            "response": " ".join(str(k) for k in range(i % 20)),
        }
        for i in range(n)
    ]


async def measure(config: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    # keep an inherited PYTHONPATH (packages installed with --target, as on the GPU machine)
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {"PYTHONPATH": path, "OMP_NUM_THREADS": str(threads)}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    launch = LaunchSettings(cwd=REPO, env=env, python=sys.executable)
    steps: list[StepEvent] = []
    start: StartEvent | None = None
    async with TrainingProcess(
        config, launch=launch, config_file=Path(config["output_dir"]) / "cfg.json"
    ) as proc:
        async for event in proc.events():
            if isinstance(event, StepEvent):
                steps.append(event)
            elif isinstance(event, StartEvent):
                start = event
        result = await proc.wait()
    if result.status != "done" or start is None:
        raise SystemExit(f"{device} run failed: {result.message}\n" + "\n".join(result.stderr_tail))
    # the warm-up: two steps, or the first window of `logging_steps` steps
    skip = 2 if config["logging_steps"] == 1 else 1
    rates = [s.tokens_per_s for s in steps[skip:]] or [s.tokens_per_s for s in steps]
    gpu = [s.gpu_mem_gb for s in steps if s.gpu_mem_gb is not None]
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "device": start.device,
        "precision": start.precision,
        "steps": steps[-1].step if steps else 0,
        "tokens_per_s": round(statistics.median(rates), 1),
        "peak_gpu_mem_gb": round(max(gpu), 3) if gpu else None,
        "peak_rss_gb": round(rss_kib / 2**20, 3) if device == "cpu" else None,
        "wall_s": round(result.done.wall_s, 2) if result.done else None,
        "final_loss": round(steps[-1].loss, 4) if steps else None,
    }


def count_parameters(model_dir: Path) -> int:
    """Parameters stored in the model's safetensors files (tied weights once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                n = 1
                for d in st.get_slice(key).get_shape():
                    n *= d
                total += n
    return total


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rows", type=int, default=400)
    p.add_argument("--hidden-size", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batching", choices=["grouped", "packed"], default="grouped")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--pad-to-multiple-of", type=int, default=8)
    p.add_argument(
        "--cudnn-attention", action="store_true", help="allow cuDNN SDPA (off by default)"
    )
    p.add_argument("--data", type=Path, default=ALPACA)
    p.add_argument(
        "--shared-packs",
        action="store_true",
        help="packed rows without the block-diagonal mask (pack_isolation = false)",
    )
    p.add_argument(
        "--logging-steps",
        type=int,
        default=1,
        help="steps per progress event (each event reads the loss: a CPU-GPU sync)",
    )
    # 1 by default: the tiny model gains nothing from more threads, and on a shared machine
    # OpenMP threads spinning under contention cost up to 10x (measured on the 2-core dev box).
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--devices", default="cpu,cuda")
    args = p.parse_args()

    import torch

    from runtime.train.tiny import build_tiny_model

    data = rows(args.rows, args.data)
    if not args.data.is_file():
        print(f"{args.data}: missing, synthetic rows used", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shards = write_shards(data, root / "data", eval_fraction=0.0)
        texts = [r[k] for r in data for k in ("instruction", "input", "response") if r.get(k)]
        model = build_tiny_model(
            root / "model",
            texts,
            vocab_size=args.vocab_size,
            hidden_size=args.hidden_size,
            num_layers=args.layers,
            # head size 64 as in real models (the tiny default of 4 heads would give heads of
            # 192+ dims at bench sizes, which the flash kernels do not take)
            num_heads=max(4, args.hidden_size // 64),
        )
        n_params = count_parameters(model)
        results = []
        for device in args.devices.split(","):
            if device == "cuda" and not torch.cuda.is_available():
                print("cuda: not available, skipped", file=sys.stderr)
                continue
            config = {
                "preset": "tiny",
                "model_dir": str(model),
                "train_files": [str(f) for f in shards.train_files],
                "output_dir": str(root / f"out-{device}"),
                "max_steps": args.steps,
                "per_device_batch_size": args.batch_size,
                "max_length": args.max_length,
                "batching": args.batching,
                "gradient_checkpointing": args.gradient_checkpointing,
                "pad_to_multiple_of": args.pad_to_multiple_of,
                "cudnn_attention": args.cudnn_attention,
                "pack_isolation": not args.shared_packs,
                "logging_steps": args.logging_steps,
                "save_steps": None,
            }
            results.append(anyio.run(measure, config, device, args.threads))

    params = (
        f"{n_params / 1e6:.1f}M params: hidden={args.hidden_size} layers={args.layers}"
        f" vocab={args.vocab_size}"
    )
    shape = (
        f"batch={args.batch_size} max_len={args.max_length} {args.batching}"
        f" pad%{args.pad_to_multiple_of} cudnn_attention={args.cudnn_attention}"
    )
    print(f"tiny Llama {params}; {shape}; {args.steps} steps; CPU threads={args.threads}")
    print(f"{'device':<8}{'precision':<10}{'tokens/s':>12}{'peak mem':>16}{'wall s':>9}")
    for r in results:
        mem = (
            f"{r['peak_gpu_mem_gb']} GiB GPU"
            if r["peak_gpu_mem_gb"] is not None
            else f"{r['peak_rss_gb']} GiB RSS"
        )
        print(
            f"{r['device']:<8}{r['precision']:<10}{r['tokens_per_s']:>12}{mem:>16}{r['wall_s']:>9}"
        )
    for r in results:
        print(
            json.dumps(
                {
                    **r,
                    "parameters": n_params,
                    "hidden_size": args.hidden_size,
                    "layers": args.layers,
                    "batch_size": args.batch_size,
                    "max_length": args.max_length,
                    "batching": args.batching,
                    "pad_to_multiple_of": args.pad_to_multiple_of,
                    "cudnn_attention": args.cudnn_attention,
                    "logging_steps": args.logging_steps,
                    "pack_isolation": not args.shared_packs,
                    "data": args.data.name if args.data.is_file() else "synthetic",
                    "threads": args.threads,
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
