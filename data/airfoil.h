// The airfoil task: NACA 4-digit sections at an angle of attack, solved with the
// panel method (data/panel_method.h) and turned into graphs for a GNN — one graph per airfoil,
// a ring over the surface points — with the lift coefficient CL as the graph-level target and
// the surface pressure coefficient Cp as an optional node-level one. docs/task_airfoil.md
// describes the task.
//
// Graph of one sample (n = panels_per_side, V = 2n nodes, E = 2V edges):
// - nodes: the 2n distinct surface points of naca4(m, p, t, n), in its clockwise order — node 0
//   the trailing edge, nodes 1..n−1 the lower surface towards the leading edge, node n the
//   leading edge, nodes n+1..2n−1 the upper surface back towards the trailing edge;
// - x (V, 5) f32, per node: (x, y, nx, ny, α) — position in chord units (x ∈ [0, 1]), outward
//   unit normal (the normalized mean of the two adjacent panels' normals), and the angle of
//   attack in RADIANS (the same on every node of a graph);
// - edge_index (2, E) i64: edges k = 0..V−1 go from node k to node k+1 (mod V), edges V..2V−1
//   the other way, from node k+1 (mod V) to node k — each node hears its two ring neighbours;
// - edge_attr (E, 2) f32: Cartesian pseudo-coordinates (x_dst − x_src, y_dst − y_src), NOT
//   normalized (PyG's Cartesian transform would map them to [0, 1] by the largest |d|; here the
//   chord is already the unit; with cosine spacing |d| ≲ π/(2n), about 0.05 at n = 32). Scale
//   them in the model if a layer wants O(1) coordinates;
// - y, batch: undefined (targets come from airfoil_targets / airfoil_cp_targets, the batch
//   vector from batch_airfoils).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/graph_batch.h"

namespace idem::data {

struct AirfoilSample {
  double m = 0, p = 0, t = 0, alpha_deg = 0;  // NACA parameters (fractions of chord), α in °
  Graph graph;                                // see the file comment
  double cl = 0;                              // lift coefficient (Kutta–Joukowski), inviscid
  std::vector<float> cp;  // per node (V): PanelSolution::cp_node, the panel-midpoint Cp
                          // interpolated to the node
};

// Uniform sampling boxes. Fractions of chord for t, m, p; degrees for α.
struct AirfoilRanges {
  double t_min, t_max, m_min, m_max, p_min, p_max, alpha_min_deg, alpha_max_deg;
};

// The training distribution: t ∈ [0.08, 0.15], m ∈ [0, 0.04], p ∈ [0.3, 0.5], α ∈ [−4°, 8°]
// (docs/task_airfoil.md). p ∈ [0.3, 0.5] is where the common 4-digit sections put their
// maximum camber (2412, 4412, 4415 at 0.4); every test set keeps that p range, so the shift is
// in t, m and α only — the three the task varies.
AirfoilRanges train_ranges();

// The four out-of-distribution test boxes, at increasing distance from the training box (each
// one starts where the previous one ends; p stays in [0.3, 0.5]):
//   level | t              | m              | α
//   1     | [0.150, 0.165] | [0.040, 0.045] | [ 8.0°,  9.5°]
//   2     | [0.165, 0.180] | [0.045, 0.050] | [ 9.5°, 11.0°]
//   3     | [0.180, 0.195] | [0.050, 0.055] | [11.0°, 12.5°]
//   4     | [0.195, 0.210] | [0.055, 0.060] | [12.5°, 14.0°]
// α stops at 14°: the panel method is inviscid and never stalls, while real sections of this
// thickness stall near 14–16° at Reynolds numbers around 10⁶; beyond that the data would be
// self-consistent potential flow but unlike any real wing. Throws idem::Error for a level
// outside 1..4.
AirfoilRanges ood_ranges(int level);

// "t [0.08, 0.15], m [0, 0.04], p [0.3, 0.5], alpha [-4, 8] deg" — for logs and run configs.
std::string ranges_str(const AirfoilRanges& r);

// n samples drawn uniformly from the box r, sample i's (t, m, p, α) from one Philox block with
// (seed, index i), each solved at panels_per_side panels per side. Deterministic per
// (n, r, seed, panels_per_side) whatever the thread count: the solves run on up to
// num_threads() threads (at most 8), each sample's randomness depends only on (seed, i),
// and the graphs are built on the calling thread afterwards. Use different seeds for the
// training and the test sets: the same seed and box give the same airfoils.
// requires: n ≥ 0; each range min ≤ max with t_min > 0, t_max ≤ 0.4, m ∈ [0, 0.1),
//           p ∈ (0, 1) when m_max > 0, α within ±30°; 4 ≤ panels_per_side ≤ 2048. Throws
//           idem::Error ([generate_airfoils]) naming the bad range.
std::vector<AirfoilSample> generate_airfoils(int64_t n, const AirfoilRanges& r, uint64_t seed,
                                             int panels_per_side = 32);

// Samples [begin, end) as one batched graph (layers/graph_batch.h batch_graphs: node ids offset,
// batch vector set, num_graphs = end − begin) on `device`.
// requires: 0 ≤ begin < end ≤ samples.size().
Graph batch_airfoils(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                     Device device = Device::cpu());

// Standardization of the CL target, fitted on the training samples only.
struct TargetScaler {
  double mean = 0, std = 1;
  double unscale(double standardized) const { return standardized * std + mean; }
};
// Mean and population std of CL over `train` (std 0 -> 1). requires: train non-empty.
TargetScaler fit_target_scaler(const std::vector<AirfoilSample>& train);

// (end − begin, 1) f32 on `device`: (CL − scaler.mean) / scaler.std of samples [begin, end),
// row g = graph g of batch_airfoils(samples, begin, end). An MAE on these times scaler.std is
// the MAE of CL (data/tabular.h mae(pred, target, scaler.std)).
Tensor airfoil_targets(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                       const TargetScaler& scaler, Device device = Device::cpu());

// (total nodes, 1) f32 on `device`: the node-level Cp of samples [begin, end), in the node order
// of batch_airfoils (not standardized: Cp is already O(1), 1 at stagnation).
Tensor airfoil_cp_targets(const std::vector<AirfoilSample>& samples, size_t begin, size_t end,
                          Device device = Device::cpu());

}  // namespace idem::data
