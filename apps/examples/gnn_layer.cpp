// Build a small graph, run a GCN and a SAGE layer on it, and print shapes and values: the
// smallest use of idem's graph layers.
//
//   gnn_layer [--device cpu|cuda[:N]]
#include <iostream>
#include <string>
#include <vector>

#include "core/kernels/runtime.h"
#include "layers/gnn.h"
#include "layers/graph_batch.h"
#include "layers/init.h"

using namespace idem;

int main(int argc, char** argv) {
  try {
    Device device = cuda::available() ? Device::cuda(0) : Device::cpu();
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (a == "--device" && i + 1 < argc) {
        device = Device::parse(argv[++i]);
      } else {
        std::cerr << "usage: gnn_layer [--device cpu|cuda[:N]]\n";
        return a == "--help" || a == "-h" ? 0 : 2;
      }
    }

    // A square 0-1-2-3 with one diagonal 0-2, undirected: every edge listed both ways.
    //   0 --- 1
    //   |  \  |
    //   3 --- 2
    const std::vector<int64_t> a = {0, 1, 2, 3, 0}, b = {1, 2, 3, 0, 2};
    std::vector<int64_t> src(a), dst(b);
    src.insert(src.end(), b.begin(), b.end());
    dst.insert(dst.end(), a.begin(), a.end());
    Graph g = Graph::from_edges(4, src, dst, device);

    // Node features (V, F) = (4, 3): indicators of nodes 0 and 1, plus a constant column.
    Tensor x = from_vector<float>({1, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1}, {4, 3}).to(device);

    init::manual_seed(0);  // reproducible weights
    GCNConv gcn(3, 2);
    SAGEConv sage(3, 2);
    gcn.to(device);
    sage.to(device);
    std::cout << gcn << "\n" << sage << "\n\n";
    std::cout << "graph: " << g.num_nodes << " nodes, " << g.num_edges() << " directed edges on "
              << g.device().str() << "\n";
    std::cout << "CSR row pointers (edges sorted by destination): " << g.csr().row_ptr << "\n";
    std::cout << "x " << shape_str(x.shape()) << ":\n" << x << "\n\n";

    NoGradGuard no_grad;  // inference only
    Tensor h_gcn = gcn(x, g);
    Tensor h_sage = sage(x, g);
    std::cout << "GCNConv -> " << shape_str(h_gcn.shape()) << ":\n" << h_gcn << "\n\n";
    std::cout << "SAGEConv -> " << shape_str(h_sage.shape()) << ":\n" << h_sage << "\n\n";

    // Graph-level readout: the mean over nodes (one graph -> one row).
    GlobalPool pool(GraphPool::mean);
    Tensor pooled = pool(h_gcn, g);
    std::cout << "mean-pooled GCN features " << shape_str(pooled.shape()) << ": " << pooled << "\n";
    return 0;
  } catch (const Error& e) {
    std::cerr << "gnn_layer: " << e.what() << "\n";
    return 1;
  }
}
