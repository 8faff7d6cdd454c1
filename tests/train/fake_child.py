"""A stand-in for `runtime.train` that exercises the launcher without torch.

Reads `--config FILE`; the JSON's `mode` picks the behaviour:
  progress  start, 3 steps (with a non-JSON line between), done; exit 0
  crash     start, one step, 30 stderr lines, then an uncaught exception (exit 1)
  no_done   start, exit 0 without a done event
  stubborn  ignore SIGTERM, print start, then wait forever (only SIGKILL ends it)
  term      print start, then wait forever (SIGTERM ends it)
  graceful  on SIGTERM write ~200 KB to stderr (more than a pipe holds), then exit 143
"""

import argparse
import json
import signal
import sys
import threading

p = argparse.ArgumentParser()
p.add_argument("--config")
with open(p.parse_args().config) as f:
    mode = json.load(f)["mode"]


def out(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


START = {
    "event": "start",
    "total_steps": 3,
    "num_train_examples": 9,
    "num_eval_examples": 0,
    "device": "cpu",
    "precision": "fp32",
}


def step(i: int) -> dict:
    return {
        "event": "step",
        "step": i,
        "total_steps": 3,
        "epoch": i / 3,
        "loss": 3.0 - i,
        "lr": 1e-3,
        "tokens_per_s": 100.0,
        "gpu_mem_gb": None,
    }


if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def graceful(signum: int, frame: object) -> None:
    for i in range(2000):
        print(f"checkpointing {i:05d} " + "x" * 80, file=sys.stderr)
    print("checkpoint written", file=sys.stderr, flush=True)
    sys.exit(143)


if mode == "graceful":
    signal.signal(signal.SIGTERM, graceful)
out(START)
if mode == "progress":
    out(step(1))
    print("a stray print from some library", flush=True)
    out(step(2))
    out({"event": "some_future_event", "x": 1})
    out(step(3))
    print("log line on stderr", file=sys.stderr, flush=True)
    out({"event": "done", "output_dir": "/nowhere", "final_loss": 0.0, "steps": 3, "wall_s": 0.1})
elif mode == "crash":
    out(step(1))
    for i in range(30):
        print(f"stderr line {i}", file=sys.stderr, flush=True)
    raise RuntimeError("boom at step 2")
elif mode in ("stubborn", "term", "graceful"):
    threading.Event().wait()
