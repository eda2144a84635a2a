"""PyTorch side of `model peak --shape M,K,N`: the best of `--reps` float32 `[M, K] @ [K, N]`
products (torch.matmul into a preallocated output, as the step's products do) on `--threads`
threads, in GFLOP/s. With the Rust side on the same shapes it says whether a gap in the training
step is the matrix products themselves (our `gemm` against PyTorch's BLAS) or the work around them.

Usage: matmul.py --shape M,K,N [--shape ...] [--reps 20] [--threads 2] [--lhs-t]

--lhs-t stores the left operand as [K, M] and multiplies its transpose, as a weight gradient
(xᵀ · dy) does; the shape is then reported as "MxKxN-t".

Prints one JSON line per shape: {"impl": "pytorch", "phase": "peak", "size": M if square else 0,
"shape": "MxKxN", "gflops": ..., "threads": ...}.
"""

import argparse
import json
import time

import torch


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", action="append", required=True, help="M,K,N")
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lhs-t", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for s in a.shape:
        m, k, n = (int(v) for v in s.split(","))
        x = torch.arange(m * k, dtype=torch.float32).remainder(17).mul(0.01)
        x = x.reshape(k, m).t() if a.lhs_t else x.reshape(m, k)
        w = torch.arange(k * n, dtype=torch.float32).remainder(13).mul(0.01).reshape(k, n)
        out = torch.empty(m, n)
        best = float("inf")
        for _ in range(a.reps + 1):
            t = time.perf_counter()
            torch.matmul(x, w, out=out)
            best = min(best, time.perf_counter() - t)
        gflops = 2.0 * m * n * k / best / 1e9
        size = m if m == k == n else 0
        print(json.dumps({"impl": "pytorch", "phase": "peak", "size": size, "shape": f"{m}x{k}x{n}" + ("-t" if a.lhs_t else ""),
                          "gflops": round(gflops, 1), "threads": a.threads}))


if __name__ == "__main__":
    main()
