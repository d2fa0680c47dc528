// Tensor semantics: factories, dtypes, views that share storage, copies that do not, printing.
#include <gtest/gtest.h>

#include "autograd/functions.h"
#include "core/kernels/runtime.h"

namespace idem {
namespace {

TEST(Tensor, FactoriesShapesAndValues) {
  Tensor z = zeros({2, 3});
  EXPECT_EQ(z.shape(), (Shape{2, 3}));
  EXPECT_EQ(z.numel(), 6);
  EXPECT_EQ(z.dtype(), DType::f32);
  EXPECT_TRUE(z.device().is_cpu());
  EXPECT_EQ(z.at({1, 2}), 0.0);
  EXPECT_EQ(ones({4}, {DType::i64}).at({3}), 1.0);
  EXPECT_EQ(full({2, 2}, 2.5, {DType::f64}).at({1, 0}), 2.5);
  EXPECT_EQ(arange(5).to_vector<float>(), (std::vector<float>{0, 1, 2, 3, 4}));
  EXPECT_EQ(arange(1.0, 2.0, 0.25, {DType::f64}).to_vector<double>(),
            (std::vector<double>{1.0, 1.25, 1.5, 1.75}));
  Tensor v = from_vector<int32_t>({1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_EQ(v.dtype(), DType::i32);
  EXPECT_EQ(v.at({1, 0}), 4.0);
  EXPECT_EQ(scalar_tensor(3.0).dim(), 0);
  EXPECT_EQ(scalar_tensor(3.0).item(), 3.0);
  EXPECT_EQ(empty({0, 3}).numel(), 0);
}

TEST(Tensor, SizeWithNegativeDims) {
  Tensor t = zeros({2, 3, 4});
  EXPECT_EQ(t.size(-1), 4);
  EXPECT_EQ(t.size(0), 2);
  EXPECT_THROW(t.size(3), Error);
}

TEST(Tensor, ViewsShareStorage) {
  Tensor t = arange(12).view_as_shape({3, 4});
  Tensor r = t.reshape({4, 3});
  Tensor f = t.flatten();
  Tensor s = t.slice0(1, 3);
  EXPECT_TRUE(r.same_storage(t));
  EXPECT_TRUE(f.same_storage(t));
  EXPECT_TRUE(s.same_storage(t));
  EXPECT_EQ(s.shape(), (Shape{2, 4}));
  EXPECT_EQ(s.at({0, 0}), 4.0);  // row 1 of t
  // Writing through the storage shows in every view.
  t.data<float>()[5] = 100.f;
  EXPECT_EQ(r.at({1, 2}), 100.0);
  EXPECT_EQ(s.at({0, 1}), 100.0);
  EXPECT_EQ(t.reshape({2, -1}).shape(), (Shape{2, 6}));
}

TEST(Tensor, CopiesDoNotShareStorage) {
  Tensor t = arange(6).view_as_shape({2, 3});
  Tensor c = t.clone_data();
  EXPECT_FALSE(c.same_storage(t));
  c.data<float>()[0] = -1.f;
  EXPECT_EQ(t.at({0, 0}), 0.0);
  Tensor tr = transpose(t);
  EXPECT_FALSE(tr.same_storage(t));
  EXPECT_EQ(tr.shape(), (Shape{3, 2}));
  EXPECT_EQ(tr.at({2, 1}), t.at({1, 2}));
}

TEST(Tensor, DtypeConversion) {
  Tensor f = from_vector<float>({1.5f, -2.7f, 3.f}, {3});
  Tensor i = f.to(DType::i64);
  EXPECT_EQ(i.dtype(), DType::i64);
  EXPECT_EQ(i.to_vector<int64_t>(), (std::vector<int64_t>{1, -2, 3}));
  EXPECT_EQ(f.to(DType::f64).at({1}), static_cast<double>(-2.7f));
  EXPECT_TRUE(f.to(DType::f32).same_storage(f));  // no-op conversion returns the same tensor
}

TEST(Tensor, CopyInto) {
  Tensor dst = zeros({2, 2});
  dst.copy_(ones({2, 2}));
  EXPECT_EQ(dst.at({1, 1}), 1.0);
  EXPECT_THROW(dst.copy_(ones({4})), Error);
}

TEST(Tensor, Printing) {
  std::string s = from_vector<float>({1, 2}, {2}).str();
  EXPECT_NE(s.find("f32"), std::string::npos);
  EXPECT_NE(s.find("(2)"), std::string::npos);
  EXPECT_NE(s.find("cpu"), std::string::npos);
  EXPECT_EQ(Tensor().str(), "Tensor(undefined)");
}

TEST(Tensor, BadInputRaisesErrorsNamingTheOp) {
  auto expect_error = [](auto&& f, const std::string& needle) {
    try {
      f();
      ADD_FAILURE() << "expected idem::Error containing '" << needle << "'";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error([] { zeros({2, 3}).reshape({4, 2}); }, "[reshape]");
  expect_error([] { zeros({2, 3}).reshape({-1, -1}); }, "[reshape]");
  expect_error([] { zeros({2}).slice0(1, 3); }, "[slice0]");
  expect_error([] { zeros({2}).item(); }, "[item]");
  expect_error([] { zeros({2}).data<double>(); }, "[data]");
  expect_error([] { empty({-1}); }, "[empty]");
  expect_error([] { Device::parse("gpu"); }, "[device]");
  expect_error([] { from_vector<float>({1, 2, 3}, {2, 2}); }, "[from_vector]");
  expect_error([] { Tensor().shape(); }, "undefined");
  expect_error([] { rand({2}, 0, {DType::i32}); }, "[random]");
}

TEST(Tensor, CudaDeviceIsAClearErrorWithoutAGpu) {
  if (cuda::available()) GTEST_SKIP() << "a GPU is present";
  try {
    zeros({2}, {DType::f32, Device::cuda(0)});
    FAIL() << "expected idem::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cuda"), std::string::npos) << e.what();
  }
}

TEST(Device, Parse) {
  EXPECT_TRUE(Device::parse("cpu").is_cpu());
  EXPECT_EQ(Device::parse("cuda:3").index, 3);
  EXPECT_EQ(Device::parse("cuda").str(), "cuda:0");
}

}  // namespace
}  // namespace idem
