"""What verify costs on top of the inference it exists to run.

    .venv/bin/python bench/verify_overhead.py [--reps 5] [--count 10]

Times, as fresh processes (start to exit), `python -m verify --json` with the assets in
../shared/testdata/coral against a bare script that does only the inference verify's smoke
test does: import the runtime, try the Edge TPU delegate, load the model, resize the image,
one inference plus COUNT more, print the top-1. Same Python, same runtime, same count.
Prints the median of each and their ratio (goal: verify <= 1.5x the bare script).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT.parent / "shared" / "testdata" / "coral"

BARE = """
import sys, time
import numpy as np
from PIL import Image
try:
    from tflite_runtime.interpreter import Interpreter, load_delegate
except ImportError:
    from ai_edge_litert.interpreter import Interpreter, load_delegate
data, count = sys.argv[1], int(sys.argv[2])
try:
    delegates = [load_delegate("libedgetpu.so.1")]
    model = data + "/mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite"
except Exception:
    delegates = None
    model = data + "/mobilenet_v2_1.0_224_inat_bird_quant.tflite"
interpreter = Interpreter(model_path=model, experimental_delegates=delegates)
interpreter.allocate_tensors()
inp = interpreter.get_input_details()[0]
out = interpreter.get_output_details()[0]
_, h, w, _ = inp["shape"]
img = Image.open(data + "/parrot.jpg").convert("RGB").resize((w, h), Image.LANCZOS)
interpreter.set_tensor(inp["index"], np.expand_dims(np.asarray(img, dtype=np.uint8), 0))
for _ in range(count + 1):
    interpreter.invoke()
scores = interpreter.get_tensor(out["index"]).reshape(-1)
labels = open(data + "/inat_bird_labels.txt").read().splitlines()
print(labels[int(scores.argmax())])
"""


def timed(argv: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 2):
        raise SystemExit(f"{argv[:3]} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    if not TESTDATA.is_dir():
        raise SystemExit(f"test data not found at {TESTDATA}")

    verify_cmd = [
        args.python,
        "-m",
        "verify",
        "--json",
        "--assets",
        str(TESTDATA),
        "--count",
        str(args.count),
    ]
    bare_cmd = [args.python, "-c", BARE, str(TESTDATA), str(args.count)]

    # one warm-up each (page cache, .pyc files), not counted
    timed(verify_cmd)
    _, bare_out = timed(bare_cmd)
    verify_top = ""
    verify_times: list[float] = []
    bare_times: list[float] = []
    for _ in range(args.reps):  # interleaved so drift in machine load hits both alike
        seconds, out = timed(verify_cmd)
        verify_times.append(seconds)
        verify_top = json.loads(out)["smoke"]["top"][0]["label"]
        seconds, bare_out = timed(bare_cmd)
        bare_times.append(seconds)

    verify_med = statistics.median(verify_times)
    bare_med = statistics.median(bare_times)
    ratio = verify_med / bare_med
    print(f"python: {args.python}")
    print(f"bare inference top-1: {bare_out.strip()}; verify top-1: {verify_top}")
    print(f"reps {args.reps}, count {args.count}")
    print(
        "verify  (s): " + " ".join(f"{t:.3f}" for t in verify_times) + f"  median {verify_med:.3f}"
    )
    print("bare    (s): " + " ".join(f"{t:.3f}" for t in bare_times) + f"  median {bare_med:.3f}")
    print(f"ratio verify/bare: {ratio:.2f}x (goal <= 1.5x)")
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
