// The fmnist task's data: Fashion-MNIST (or any IDX image set with the same file names, e.g.
// MNIST, KMNIST) read from disk, and a tiny synthetic stand-in for tests and smoke runs.
//
// Files looked up in `dir` (each plain or with a .gz suffix; the plain name wins):
//   train-images-idx3-ubyte  train-labels-idx1-ubyte  t10k-images-idx3-ubyte t10k-labels-idx1-ubyte
// The default directory is where Debian's dataset-fashion-mnist package installs them.
#pragma once
#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace idem::data {

constexpr const char* kFmnistDefaultDir = "/usr/share/datasets/fashion-mnist";

struct ImageDataset {
  Tensor images;  // (N,1,H,W) f32 in [0,1] (H = W = 28 for Fashion-MNIST)
  Tensor labels;  // (N) i64 in [0, num_classes)
  int64_t num_classes = 10;
  int64_t size() const { return images.defined() ? images.size(0) : 0; }
};

struct FmnistData {
  ImageDataset train, test;
  std::string source;  // the directory read, e.g. "/usr/share/datasets/fashion-mnist"
};

// Reads the four IDX files from `dir` ("" = kFmnistDefaultDir). max_train / max_test >= 0 keep
// only the first N images of each split (files are in their published order, so the first N
// are a fixed, roughly class-balanced subset); -1 keeps all; N larger than the split keeps all;
// 0 reads only that split's labels and image header (fast: e.g. test-only evaluation).
// num_classes = 1 + the largest label in either split (at least 10).
// Errors (idem::Error "[fmnist] ..."): a missing file (names the file, the directory, and how to
// get it: `sudo apt-get install dataset-fashion-mnist` or --data DIR), image files that are not
// (N,H,W) u8, label files that are not (N) u8, and image/label counts that differ.
FmnistData load_fmnist(const std::string& dir = "", int64_t max_train = -1, int64_t max_test = -1);

// A built-in 10-class 28x28 data set: class k is a fixed stroke shape (0 horizontal bar,
// 1 vertical bar, 2 "\" diagonal, 3 "/" diagonal, 4 square outline, 5 filled disk, 6 plus,
// 7 cross, 8 ring, 9 triangle outline) drawn anti-aliased with random position, size, rotation,
// stroke width and brightness, plus faint noise. Image i (its label and jitter) depends only on
// (seed, i). Easy on purpose: a 2-conv BatchNorm CNN reaches 100% held-out accuracy within 200
// Adam steps (batch 64).
// ensures: images (n,1,28,28) f32 in [0,1], labels (n) i64 in [0,10).
ImageDataset synthetic_images(int64_t n, uint64_t seed);

}  // namespace idem::data
