"""Predicted data-parallel scaling from measured figures: compute per step on this machine
and the packed gradient's size (``bench/bench_distributed.py --out FILE``), on 10 and
100 Gbit/s networks of K = 2..64 machines.

Model (no overlap of communication with the backward pass):

- compute per step ``T_c = batch / (samples/s of one process on all cores)``, measured;
- ring all-reduce of ``B`` bytes: ``T_ar = 2 (K-1) a + 2 (K-1)/K * B / b`` (``a``
  per-message latency, ``b`` bandwidth): every byte crosses the slowest link twice
  (reduce-scatter, then all-gather), in 2 (K-1) messages;
- weak scaling (what data-parallel training does: each machine keeps the batch, the
  global batch is K times larger): efficiency ``E = T_c / (T_c + T_ar)``, speed-up ``K E``;
  the compute/communication ratio is ``T_c / T_ar``.

Assumed links: 10 Gbit/s Ethernet with TCP, b = 1.1 GB/s (90% of line rate), a = 25 us;
100 Gbit/s (InfiniBand / RoCE), b = 11 GB/s, a = 2 us. Usage:

    python bench/cost_model.py results.json [--plot docs/scaling.png]
"""
import argparse
import json
import os
import sys

LINKS = {"10 Gbit/s": (1.1e9, 25e-6), "100 Gbit/s": (11e9, 2e-6)}
MACHINES = [2, 4, 8, 16, 32, 64]


def allreduce_seconds(nbytes, machines, bandwidth, latency):
    """Ring all-reduce of ``nbytes`` over ``machines``: 2(K-1) latencies + 2(K-1)/K bytes/b."""
    k = machines
    return 2 * (k - 1) * latency + 2 * (k - 1) / k * nbytes / bandwidth


def predict(rows, dtype="float32"):
    """Per network: compute per step and, per link and K, the all-reduce time and efficiency."""
    out = []
    for r in rows:
        if r["dtype"] != dtype:
            continue
        batch = int(r["net"].split("@")[1])
        compute = batch / r["single_samples_s"]
        per_link = {}
        for link, (bandwidth, latency) in LINKS.items():
            per_link[link] = [(k, allreduce_seconds(r["bytes"], k, bandwidth, latency))
                              for k in MACHINES]
        out.append({"net": r["net"], "bytes": r["bytes"], "compute_s": compute,
                    "links": per_link})
    return out


def table(predictions, dtype):
    """Markdown: compute/communication ratio and efficiency per network, link and K."""
    head = f"| network ({dtype}) | MB | compute ms | link | " + " | ".join(
        f"K={k}" for k in MACHINES) + " |"
    lines = [head, "|" + "---|" * (4 + len(MACHINES))]
    for p in predictions:
        for link, points in p["links"].items():
            cells = [f"{p['compute_s'] / (p['compute_s'] + t):.0%} ({p['compute_s'] / t:.1f})"
                     for _, t in points]
            lines.append(f"| {p['net']} | {p['bytes'] / 1e6:.2f} | {1e3 * p['compute_s']:.2f} | "
                         f"{link} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="JSON written by bench/bench_distributed.py --out")
    parser.add_argument("--plot", default=None, help="efficiency curves (needs matplotlib)")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        predictions = predict(json.load(f), args.dtype)
    print("weak-scaling efficiency T_c / (T_c + T_ar) (compute/communication ratio)")
    print(table(predictions, args.dtype))
    if args.plot:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from fastmlp import _plot
        _plot.scaling_efficiency(predictions, MACHINES, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
