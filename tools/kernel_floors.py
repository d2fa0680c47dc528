#!/usr/bin/env python3
"""The floors of idem's GPU kernels and of whole IT³ adaptations: FLOPs over the FP32 peak and
bytes over the memory bandwidth, beside the times we measured (docs/performance.md, "Floors").

A floor is what no FP32 kernel on the card can beat: every FLOP at the card's peak rate, every
byte that must come from or go to device memory at its peak bandwidth, and nothing else. It is
max(FLOP time, byte time) for one kernel. Tensor cores (TF32) are left out on purpose: idem's
kernels and the PyTorch runs we compare with compute in FP32.

    python3 tools/kernel_floors.py            # the table for an H100 SXM (80GB HBM3)
    python3 tools/kernel_floors.py --card h200

The measured column is copied from docs/performance.md (date and call named there); this
script computes the floors only, it times nothing.
"""
import argparse

# Peak FP32 rate without tensor cores (SMs x 128 FP32 lanes x 2 FLOPs per FMA x boost clock)
# and peak device-memory bandwidth, from NVIDIA's data sheets.
CARDS = {
    "h100": {"name": "H100 SXM 80GB HBM3", "flops": 132 * 128 * 2 * 1.98e9, "bytes": 3.35e12},
    "h200": {"name": "H200 SXM 141GB HBM3e", "flops": 132 * 128 * 2 * 1.98e9, "bytes": 4.8e12},
}
F32 = 4  # bytes per element
I64 = 8


def gemm_flops(m, n, k):
    return 2.0 * m * n * k


def gemm_bytes(m, n, k):
    """A (m x k) and B (k x n) read once, C (m x n) written once, in f32."""
    return (m * k + k * n + m * n) * F32


# ---- one kernel at the shapes we benchmarked (bench/, docs/performance.md) -----------------

# sage at 64 meshes of 32 x 32 nodes (it3::grid_mesh_batch): V nodes, E directed edges.
SAGE_V, SAGE_E, SAGE_F = 64 * 32 * 32, 64 * 5890, 64
# bn_cnn's 32 -> 64 3x3 convolution on 14 x 14 maps and the 64 -> 64 head on 7 x 7, batch 128.
CONV2_NPQ, CONV2_CIN, CONV2_COUT = 128 * 14 * 14, 32, 64
HEAD_NPQ, HEAD_CIN, HEAD_COUT = 128 * 7 * 7, 64, 64


def conv_bytes(npq, cin, cout):
    # input map (same spatial size, pad 1) and output map; the 3x3 weights are negligible
    return (npq * cin + npq * cout) * F32


KERNELS = [
    # (kernel, shape, FLOPs, bytes, measured µs, where measured)
    ("sage dW = gzᵀ·x, tiled split-K", "64 x 65 536 x 64",
     gemm_flops(64, 64, SAGE_V), 2 * SAGE_V * SAGE_F * F32, 27.7, "H100, cold L2"),
    ("sage_linear forward (2 GEMMs, bias + ReLU in the store)", "65 536 x (64 + 64) -> 64",
     gemm_flops(SAGE_V, 64, 2 * SAGE_F), 3 * SAGE_V * SAGE_F * F32, 53.9, "H100, cold L2"),
    ("csr mean aggregation forward", "V 65 536, E 376 960, F 64",
     1.0 * SAGE_E * SAGE_F + SAGE_V * SAGE_F,
     2 * SAGE_V * SAGE_F * F32 + (SAGE_V + 1 + SAGE_E) * I64, 27.1, "H100, cold L2"),
    ("csr mean aggregation backward", "V 65 536, E 376 960, F 64",
     1.0 * SAGE_E * SAGE_F + SAGE_V * SAGE_F,
     2 * SAGE_V * SAGE_F * F32 + (2 * (SAGE_V + 1) + 2 * SAGE_E) * I64, 53.8, "H100, cold L2"),
    ("conv implicit GEMM forward, bn_cnn 32 -> 64", "batch 128, 14 x 14, 3 x 3",
     gemm_flops(CONV2_NPQ, CONV2_COUT, CONV2_CIN * 9), conv_bytes(CONV2_NPQ, CONV2_CIN, CONV2_COUT),
     55.3, "H100, warm"),
    ("conv implicit GEMM backward-data, bn_cnn 32 -> 64", "batch 128, 14 x 14, 3 x 3",
     gemm_flops(CONV2_NPQ, CONV2_CIN, CONV2_COUT * 9), conv_bytes(CONV2_NPQ, CONV2_CIN, CONV2_COUT),
     122.0, "H100, warm"),
    ("conv implicit GEMM weight gradient, bn_cnn 32 -> 64", "batch 128, 14 x 14, 3 x 3",
     gemm_flops(CONV2_COUT, CONV2_CIN * 9, CONV2_NPQ), conv_bytes(CONV2_NPQ, CONV2_CIN, CONV2_COUT),
     62.3, "H100, warm"),
    ("conv implicit GEMM weight gradient, bn_cnn head 64 -> 64", "batch 128, 7 x 7, 3 x 3",
     gemm_flops(HEAD_COUT, HEAD_CIN * 9, HEAD_NPQ), conv_bytes(HEAD_NPQ, HEAD_CIN, HEAD_COUT),
     34.9, "H100, warm"),
    # The sage first layer's products (3 inputs), 2026-12-07: the small kernel the router took
    # before the fourth session, the 128 x 64 tile it takes now (same bits), and for the input
    # gradient the tile before and the narrow kernel now.
    ("sage first-layer forward x·Wrᵀ, small kernel (before)", "65 536 x 3 -> 64",
     gemm_flops(SAGE_V, 64, 3), gemm_bytes(SAGE_V, 64, 3), 24.1, "H100, cold L2"),
    ("same, the 128 x 64 tile (the router's since the fourth session)", "65 536 x 3 -> 64",
     gemm_flops(SAGE_V, 64, 3), gemm_bytes(SAGE_V, 64, 3), 10.6, "H100, cold L2"),
    ("sage first-layer input gradient gz·W, 128 x 64 tile (before)", "65 536 x 64 -> 3",
     gemm_flops(SAGE_V, 3, 64), gemm_bytes(SAGE_V, 3, 64), 25.9, "H100, cold L2"),
    ("same, the narrow kernel (the router's since the fourth session)", "65 536 x 64 -> 3",
     gemm_flops(SAGE_V, 3, 64), gemm_bytes(SAGE_V, 3, 64), 17.0, "H100, cold L2"),
    # The fmnist CNN's first layer's weight gradient at batch 256 (1 -> 10 channels, 5 x 5 taps,
    # 28 x 28 -> 24 x 24), per image (fourth session, 2026-12-07): x and dy read once.
    ("conv weight gradient per image, fmnist 1 -> 10", "batch 256, 24 x 24, 5 x 5",
     gemm_flops(10, 25, 256 * 24 * 24), (256 * 28 * 28 + 256 * 10 * 24 * 24) * F32, 32.5,
     "H100, cold L2"),
    # mlp_256's middle layer at batch 64 (2026-12-07): far below a microsecond of FLOPs or bytes,
    # so the time is latency (one launch, a K chain), not throughput.
    ("mlp_256 layer, cluster split-K", "64 x 256 -> 256",
     gemm_flops(64, 256, 256), gemm_bytes(64, 256, 256), 5.49, "H100, per launch in a loop"),
]


# ---- whole adaptations: FLOPs of one IT³ step + prediction ---------------------------------

def sage_adaptation_flops(meshes, steps, widths=(3, 64, 64, 64), out=64):
    """FLOPs of the GEMMs of one IT³ adaptation of the bench's `sage` (4 SAGEConv layers of
    width 64 over 2 node features + 1 signal column). A layer with n inputs costs two GEMMs of
    V x n x out each way: forward y = mean·Wlᵀ + x·Wrᵀ; input gradient da = gz·Wl, dx = gz·Wr;
    weight gradient dWl = gzᵀ·mean, dWr = gzᵀ·x. Per step: forward f(x, ∅), forward F(x, s),
    backward through F for the input gradient only, backward through f for the input gradients
    (not the first layer's: x needs none) and the weight gradients; then the prediction's
    forward. The aggregations, activations, pooling and head are under 1 % and left out."""
    v = meshes * 32 * 32
    layer = [2 * gemm_flops(v, out, n) for n in widths]  # one pass of one layer
    forward = sum(layer)
    input_grad_through_F = forward  # every layer's da and dx, as many FLOPs as the forward
    input_grad_through_f = sum(layer[1:])
    weight_grad_f = forward  # dWl and dWr of every layer
    per_step = 2 * forward + input_grad_through_F + input_grad_through_f + weight_grad_f
    return steps * per_step + forward


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--card", choices=sorted(CARDS), default="h100")
    card = CARDS[ap.parse_args().card]
    print(f"Floors on an {card['name']}: FP32 {card['flops'] / 1e12:.1f} TFLOP/s, "
          f"memory {card['bytes'] / 1e12:.2f} TB/s\n")
    print("| kernel | shape | GFLOP | MB | FLOP floor µs | byte floor µs | floor µs | measured µs "
          "| measured / floor |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape, flops, nbytes, measured, where in KERNELS:
        tf, tb = flops / card["flops"] * 1e6, nbytes / card["bytes"] * 1e6
        floor = max(tf, tb)
        print(f"| {name} | {shape} | {flops / 1e9:.3f} | {nbytes / 1e6:.1f} | {tf:.1f} | {tb:.1f} "
              f"| {floor:.1f} | {measured:.1f} ({where}) | {measured / floor:.1f} |")
    print("\nsage, one IT³ adaptation (GEMM FLOPs only), against the FP32 peak:\n")
    print("| meshes | nodes | K | GFLOP | FLOP floor µs |")
    print("|---:|---:|---:|---:|---:|")
    for meshes in (8, 64, 256):
        for steps in (1, 3):
            flops = sage_adaptation_flops(meshes, steps)
            print(f"| {meshes} | {meshes * 1024} | {steps} | {flops / 1e9:.2f} "
                  f"| {flops / card['flops'] * 1e6:.0f} |")


if __name__ == "__main__":
    main()
