// Fashion-MNIST loading (the real files when installed, IDX fixtures otherwise) and the
// synthetic 10-class image set.
#include "data/fmnist.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "data/idx.h"
#include "tests/test_util.h"

namespace idem::data {
namespace {

using testing::bit_equal;
using testing::expect_error;
using testing::TempDir;

TEST(Fmnist, ReadsTheInstalledDataSet) {
  if (!std::filesystem::exists(kFmnistDefaultDir))
    GTEST_SKIP() << kFmnistDefaultDir
                 << " not installed (sudo apt-get install dataset-fashion-mnist)";
  const FmnistData d = load_fmnist();
  EXPECT_EQ(d.source, kFmnistDefaultDir);
  EXPECT_EQ(d.train.images.shape(), (Shape{60000, 1, 28, 28}));
  EXPECT_EQ(d.test.images.shape(), (Shape{10000, 1, 28, 28}));
  EXPECT_EQ(d.train.labels.shape(), (Shape{60000}));
  EXPECT_EQ(d.train.labels.dtype(), DType::i64);
  EXPECT_EQ(d.train.num_classes, 10);
  // Ten balanced classes: 6000 per class in train, 1000 in test.
  for (const auto& [set, per_class] :
       {std::make_pair(&d.train, 6000), std::make_pair(&d.test, 1000)}) {
    std::vector<int64_t> count(10, 0);
    for (int64_t l : set->labels.to_vector<int64_t>()) {
      ASSERT_TRUE(l >= 0 && l < 10) << l;
      ++count[l];
    }
    for (int64_t c : count) EXPECT_EQ(c, per_class);
  }
  const float* px = d.train.images.data<float>();
  const int64_t n = d.train.images.numel();
  const auto [lo, hi] = std::minmax_element(px, px + n);
  EXPECT_EQ(*lo, 0.0f);
  EXPECT_EQ(*hi, 1.0f);
  double mean = 0;
  for (int64_t i = 0; i < n; ++i) mean += px[i];
  EXPECT_NEAR(mean / static_cast<double>(n), 0.2860, 0.001);  // the published mean

  // max_test keeps the first N (max_train = 0 skips decoding the training images).
  const FmnistData small = load_fmnist("", 0, 7);
  EXPECT_EQ(small.train.images.shape(), (Shape{0, 1, 28, 28}));
  EXPECT_EQ(small.test.images.shape(), (Shape{7, 1, 28, 28}));
  EXPECT_TRUE(bit_equal(small.test.images, d.test.images.slice0(0, 7).clone_data()));
  EXPECT_TRUE(bit_equal(small.test.labels, d.test.labels.slice0(0, 7).clone_data()));
  EXPECT_EQ(load_fmnist("", 0, 1 << 20).test.size(), 10000);  // more than there is: all
}

// A fixture directory in the Fashion-MNIST layout: u8 images (n,h,w) and labels (n).
void write_split(const TempDir& dir, const std::string& prefix, int64_t n, bool gzip,
                 int64_t labels_n = -1, uint8_t max_label = 9) {
  Tensor images = empty({n, 5, 4}, {DType::u8});
  uint8_t* p = images.data<uint8_t>();
  for (int64_t i = 0; i < images.numel(); ++i) p[i] = static_cast<uint8_t>(i * 37);
  Tensor labels = empty({labels_n < 0 ? n : labels_n}, {DType::u8});
  uint8_t* l = labels.data<uint8_t>();
  for (int64_t i = 0; i < labels.numel(); ++i)
    l[i] = static_cast<uint8_t>(i + 1 == labels.numel() ? max_label : i % 10);
  const std::string gz = gzip ? ".gz" : "";
  write_idx(dir.file(prefix + "-images-idx3-ubyte" + gz), images, gzip);
  write_idx(dir.file(prefix + "-labels-idx1-ubyte" + gz), labels, gzip);
}

TEST(Fmnist, ReadsAnyIdxDirectoryPlainOrGzip) {
  TempDir dir("idem_fmnist_test");
  write_split(dir, "train", 6, true);
  write_split(dir, "t10k", 3, false, -1, 12);
  const FmnistData d = load_fmnist(dir.path().string());
  EXPECT_EQ(d.source, dir.path().string());
  EXPECT_EQ(d.train.images.shape(), (Shape{6, 1, 5, 4}));
  EXPECT_EQ(d.test.images.shape(), (Shape{3, 1, 5, 4}));
  EXPECT_EQ(d.train.num_classes, 13);  // the test split holds label 12
  EXPECT_EQ(d.test.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 12}));
  // u8 -> [0,1]: pixel 1 of image 0 is 37.
  EXPECT_EQ(d.train.images.to_vector<float>()[1], 37.0f / 255.0f);
  const FmnistData some = load_fmnist(dir.path().string(), 2, 0);
  EXPECT_EQ(some.train.size(), 2);
  EXPECT_EQ(some.test.images.shape(), (Shape{0, 1, 5, 4}));  // not read, but shaped
  EXPECT_EQ(some.test.num_classes, 13);
}

TEST(Fmnist, Errors) {
  TempDir dir("idem_fmnist_test");
  const std::string root = dir.path().string();
  write_split(dir, "train", 4, true);
  // Missing test files: the message names the file and both ways out.
  expect_error([&] { load_fmnist(root); }, "fmnist",
               "missing t10k-images-idx3-ubyte (or t10k-images-idx3-ubyte.gz) in " + root);
  expect_error([&] { load_fmnist(root); }, "fmnist", "sudo apt-get install dataset-fashion-mnist");
  expect_error([&] { load_fmnist(root); }, "fmnist", "--data DIR");
  expect_error([&] { load_fmnist(root + "/nowhere"); }, "fmnist", "the directory does not exist");
  // Counts that disagree.
  write_split(dir, "t10k", 3, false, 5);
  expect_error([&] { load_fmnist(root); }, "fmnist", "holds 3 images but",
               "t10k-labels-idx1-ubyte holds 5 labels");
  expect_error([&] { load_fmnist(root, -1, 0); }, "fmnist", "holds 3 images but");
  // Not u8 images.
  write_split(dir, "t10k", 3, false);
  write_idx(dir.file("t10k-images-idx3-ubyte"), zeros({3, 5, 4}), false);
  expect_error([&] { load_fmnist(root); }, "fmnist",
               "expected u8 images of shape (N,H,W), got f32");
  expect_error([&] { load_fmnist(root, -1, 0); }, "fmnist", "expected u8 images");
  // A hostile file surfaces the IDX reader's error.
  testing::write_bytes(dir.file("t10k-images-idx3-ubyte"), "\x12\x34\x08\x03");
  expect_error([&] { load_fmnist(root); }, "idx", "wrong magic", "t10k-images-idx3-ubyte");
  expect_error([&] { load_fmnist(root, -2); }, "fmnist", "max_train and max_test must be >= 0");
}

TEST(Fmnist, SyntheticImages) {
  const ImageDataset d = synthetic_images(400, 1);
  EXPECT_EQ(d.images.shape(), (Shape{400, 1, 28, 28}));
  EXPECT_EQ(d.labels.shape(), (Shape{400}));
  EXPECT_EQ(d.labels.dtype(), DType::i64);
  EXPECT_EQ(d.num_classes, 10);
  std::vector<int64_t> count(10, 0);
  for (int64_t l : d.labels.to_vector<int64_t>()) {
    ASSERT_TRUE(l >= 0 && l < 10);
    ++count[l];
  }
  for (int64_t c : count) EXPECT_GT(c, 20);  // every class present, roughly balanced
  for (float v : d.images.to_vector<float>()) ASSERT_TRUE(v >= 0.0f && v <= 1.0f);
  // Deterministic; image i does not depend on n; another seed gives other images.
  EXPECT_TRUE(bit_equal(synthetic_images(400, 1).images, d.images));
  EXPECT_TRUE(bit_equal(synthetic_images(7, 1).images, d.images.slice0(0, 7).clone_data()));
  EXPECT_FALSE(bit_equal(synthetic_images(7, 2).images, d.images.slice0(0, 7).clone_data()));
  EXPECT_EQ(synthetic_images(0, 1).size(), 0);
}

// Learnable: even a nearest-class-mean classifier (no training at all) separates the classes
// well on held-out images; a CNN does far better.
TEST(Fmnist, SyntheticImagesAreLearnable) {
  const ImageDataset train = synthetic_images(1000, 3), test = synthetic_images(300, 4);
  const int64_t p = 28 * 28;
  std::vector<double> mean(10 * p, 0.0), n(10, 0.0);
  const std::vector<float> xs = train.images.to_vector<float>();
  const std::vector<int64_t> ys = train.labels.to_vector<int64_t>();
  for (int64_t i = 0; i < 1000; ++i) {
    n[ys[i]] += 1;
    for (int64_t j = 0; j < p; ++j) mean[ys[i] * p + j] += xs[i * p + j];
  }
  for (int64_t c = 0; c < 10; ++c)
    for (int64_t j = 0; j < p; ++j) mean[c * p + j] /= n[c];
  const std::vector<float> xt = test.images.to_vector<float>();
  const std::vector<int64_t> yt = test.labels.to_vector<int64_t>();
  int correct = 0;
  for (int64_t i = 0; i < 300; ++i) {
    int64_t best = 0;
    double best_d = 1e300;
    for (int64_t c = 0; c < 10; ++c) {
      double dist = 0;
      for (int64_t j = 0; j < p; ++j) dist += std::pow(xt[i * p + j] - mean[c * p + j], 2);
      if (dist < best_d) best_d = dist, best = c;
    }
    correct += best == yt[i];
  }
  EXPECT_GT(correct / 300.0, 0.6) << correct << " of 300";
}

}  // namespace
}  // namespace idem::data
