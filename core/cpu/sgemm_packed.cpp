// The packed f32 GEMM of the CPU (AVX2 + FMA, and AVX-512 micro-kernels where the build and the
// CPU have them), BLIS-style: C = alpha·op(A)·op(B) + beta·C.
//
// Blocking (per tile of C, see "Threads" below):
//   for jc over the tile's columns, NC at a time
//     for pc over K, KC at a time                  pack op(B)[pc:+kc, jc:+nc] into NR-column panels
//       for ic over the tile's rows, MC at a time   pack op(A)[ic:+mc, pc:+kc] into MR-row panels
//         for every NR panel jr, every MR panel ir: the MR×NR micro-kernel
// A packed A panel is kc × MR floats, k-major (the MR values of one k side by side); a packed B
// panel is kc × NR floats, k-major. The packing does the transposes, so the micro-kernel sees
// one layout whatever trans_a / trans_b are. Panels past the edge of op(A) or op(B) are padded
// with zeros; the micro-kernel always computes a full MR×NR block into a scratch tile, and the
// update writes its valid part into C.
//
// Two sets of micro-kernels share this code (the driver is a template over NR):
//   AVX2 (NR = 16, here): 6×16 in 12 ymm accumulators (per k two loads of B, six broadcasts of
//     A, 12 FMAs), and 4×16 for products of few rows that 4 divides better (8, 20).
//   AVX-512 (NR = 32, core/cpu/sgemm_avx512.cpp): MR×32 in 2·MR zmm accumulators, MR = 4, 6,
//     8, 10, 12 or 14, whichever pads the product's rows least (Kernels::pick).
// sgemm_packed runs the AVX-512 ones when sgemm_packed_avx512_available(), else the AVX2 ones;
// the packing and the update of C are AVX2 code either way.
//
// Summation order (why the bits do not depend on the tiling, the thread count or the kernels):
// element C[i, j] is, for each KC block of K in increasing order, a chain of FMAs over that
// block's k in increasing order starting from 0 (acc), then
//   first block:  C = alpha·acc            (beta = 0: C is never read)
//                 C = beta·C + alpha·acc   (otherwise)
//   later blocks: C = C + alpha·acc
// That depends on K and KC only: not on i, j, on where the tile or panel boundaries fall, on
// the thread count, or on the micro-kernel's shape and instruction set (both compute the same
// chains, and KC is shared). Contraction is off for these files (CMakeLists.txt), so the
// scalar edge code rounds exactly as the vector code does.
//
// Threads: C is cut into tiles along its longer side (rows or columns; never K), the tiles and
// batch entries run on our pool (core/parallel.h), each tile packing its own panels into
// buffers of the thread that runs it.
#include <algorithm>
#include <cstdlib>
#include <new>

#include "core/cpu/sgemm_avx512.h"
#include "core/error.h"
#include "core/kernels/matmul.h"
#include "core/parallel.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define IDEM_SGEMM_PACKED 1
#endif

namespace idem::cpu {

#ifdef IDEM_SGEMM_PACKED

bool sgemm_packed_available() { return true; }

namespace {

// Blocking shared by both instruction sets. KC is also the length of each FMA chain, so it must
// be the same for both: then they give the same bits.
constexpr int64_t KC = 256;  // a packed B panel (KC × NR: 16 KiB for AVX2, 32 KiB for AVX-512) stays in L1
constexpr int64_t MC = 168;  // packed A block (MC × KC, 168 KiB) stays in L2; rounded down to whole panels
constexpr int64_t NC = 3072; // packed B block (KC × NC, 3 MiB) stays in L3
constexpr int64_t kMaxMr = 16;  // rows of the tallest micro-kernel, at most (scratch tile, pack_a)

// A 64-byte aligned float buffer owned by one thread, grown on demand and kept between calls
// (the pool's workers live on, so packing allocates nothing in steady state).
struct PackBuffer {
  float* data = nullptr;
  int64_t size = 0;
  ~PackBuffer() { std::free(data); }
  float* get(int64_t n) {
    if (n > size) {
      std::free(data);
      const size_t bytes = (size_t(n) * sizeof(float) + 63) / 64 * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data) throw std::bad_alloc();
      size = n;
    }
    return data;
  }
};

// The operands of one batch entry, as stored (row-major, contiguous).
struct Operands {
  const float* a;
  const float* b;
  float* c;
  int64_t M, N, K;
  bool trans_a, trans_b;
  float alpha, beta;
  int64_t mr;               // rows per A panel (the micro-kernel's height, Kernels::pick)
  SgemmMicroKernel kernel;  // t (mr × NR) <- a_panel · b_panel
};

// d[0..7] (rows `ld` apart) <- the 8×8 transpose of the n source rows s, s + sld, ...,
// s + (n − 1)·sld (8 floats each; 1 <= n <= 8), zero-padded: d row c holds element c of each
// source row in lanes 0..n−1 and zeros in lanes n..7 (the missing rows read row n − 1 again).
inline void transpose8x8(const float* s, int64_t sld, int64_t n, float* d, int64_t ld) {
  __m256 r[8];
  for (int64_t i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + std::min<int64_t>(i, n - 1) * sld);
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  const __m256 out[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                         _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                         _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                         _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
  // lanes < n all ones, the rest zero
  const __m256 keep = _mm256_castsi256_ps(
      _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  for (int64_t c = 0; c < 8; ++c) _mm256_storeu_ps(d + c * ld, _mm256_and_ps(out[c], keep));
}

// Packs rows [v, v + 8) of an n-row block, 8 k at a time: the transpose above for the rows that
// exist, zeros where none does.
inline void transpose_group(const float* s, int64_t sld, int64_t n, int64_t v, float* d, int64_t ld) {
  const int64_t have = std::min<int64_t>(8, n - v);
  if (have > 0) {
    transpose8x8(s + v * sld, sld, have, d, ld);
  } else {
    for (int64_t c = 0; c < 8; ++c) _mm256_storeu_ps(d + c * ld, _mm256_setzero_ps());
  }
}

// dst (panels of kc × o.mr) <- op(A)[i0 : i0 + mc, k0 : k0 + kc], zero rows past mc. The buffer
// has 8 floats of slack past the last panel (the vector path may store 7 past a panel's end).
void pack_a(float* dst, const Operands& o, int64_t i0, int64_t mc, int64_t k0, int64_t kc) {
  const int64_t mr = o.mr;
  for (int64_t p = 0; p < mc; p += mr, dst += kc * mr) {
    const int64_t rows = std::min(mr, mc - p);
    if (o.trans_a) {  // A stored (K, M): op(A)[i, k] = A[k·M + i], rows of a panel adjacent
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = o.a + (k0 + k) * o.M + i0 + p;
        float* d = dst + k * mr;
        int64_t r = 0;
        for (; r < rows; ++r) d[r] = src[r];
        for (; r < mr; ++r) d[r] = 0.f;
      }
      continue;
    }
    // A stored (M, K): op(A)[i, k] = A[i·K + k]. 8 k at a time, each group of 8 rows through
    // an 8×8 transpose (zeros for rows past `rows`); each k row stores 8 floats per group, the
    // ones past mr landing in the next k row (or the next panel), which is stored after them
    // and overwrites them.
    const float* src = o.a + (i0 + p) * o.K + k0;
    const int64_t groups = (mr + 7) / 8;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8) {
      alignas(32) float t[kMaxMr / 8][8 * 8];
      for (int64_t g = 0; g < groups; ++g) transpose_group(src + k, o.K, rows, 8 * g, t[g], 8);
      for (int64_t j = 0; j < 8; ++j)
        for (int64_t g = 0; g < groups; ++g)
          _mm256_storeu_ps(dst + (k + j) * mr + g * 8, _mm256_load_ps(t[g] + j * 8));
    }
    for (; k < kc; ++k)
      for (int64_t r = 0; r < mr; ++r) dst[k * mr + r] = r < rows ? src[r * o.K + k] : 0.f;
  }
}

// dst (panels of kc × NR) <- op(B)[k0 : k0 + kc, j0 : j0 + nc], zero columns past nc.
template <int64_t NR>
void pack_b(float* dst, const Operands& o, int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  if (!o.trans_b) {
    // B stored (K, N): op(B)[k, j] = B[k·N + j]. Groups of full panels, 128 columns per pass
    // over k, so each row of B is read 128 floats at a time (not NR floats at a stride of N).
    constexpr int64_t group = 128 / NR;
    const int64_t full = nc / NR;
    for (int64_t g = 0; g < full; g += group) {
      const int64_t panels = std::min<int64_t>(group, full - g);
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = o.b + (k0 + k) * o.N + j0 + g * NR;
        for (int64_t q = 0; q < panels; ++q) {
          float* d = dst + (g + q) * kc * NR + k * NR;
          for (int64_t v = 0; v < NR; v += 8) _mm256_store_ps(d + v, _mm256_loadu_ps(src + q * NR + v));
        }
      }
    }
    if (full * NR < nc) {
      const int64_t cols = nc - full * NR;
      float* d0 = dst + full * kc * NR;
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = o.b + (k0 + k) * o.N + j0 + full * NR;
        float* d = d0 + k * NR;
        int64_t c = 0;
        for (; c < cols; ++c) d[c] = src[c];
        for (; c < NR; ++c) d[c] = 0.f;
      }
    }
    return;
  }
  // B stored (N, K): op(B)[k, j] = B[j·K + k]. A panel's NR rows of B, 8 k at a time, go
  // through NR / 8 transposes of 8×8 (zeros for columns past nc).
  for (int64_t p = 0; p < nc; p += NR, dst += kc * NR) {
    const int64_t cols = std::min(NR, nc - p);
    const float* src = o.b + (j0 + p) * o.K + k0;
    int64_t k = 0;
    for (; k + 8 <= kc; k += 8)
      for (int64_t v = 0; v < NR; v += 8) transpose_group(src + k, o.K, cols, v, dst + k * NR + v, NR);
    for (; k < kc; ++k)
      for (int64_t c = 0; c < NR; ++c) dst[k * NR + c] = c < cols ? src[c * o.K + k] : 0.f;
  }
}

// How a finished block of acc meets C (the file comment's three cases).
enum class Update { set, scale, add };

inline __m256 combine(__m256 acc, const float* c, Update u, __m256 alpha, __m256 beta,
                      bool unit_alpha) {
  const __m256 t = unit_alpha ? acc : _mm256_mul_ps(alpha, acc);
  switch (u) {
    case Update::set: return t;
    case Update::scale: return _mm256_add_ps(_mm256_mul_ps(beta, _mm256_loadu_ps(c)), t);
    default: return _mm256_add_ps(_mm256_loadu_ps(c), t);
  }
}

inline float combine(float acc, float c, Update u, float alpha, float beta, bool unit_alpha) {
  const float t = unit_alpha ? acc : alpha * acc;
  switch (u) {
    case Update::set: return t;
    case Update::scale: return beta * c + t;
    default: return c + t;
  }
}

// The AVX2 micro-kernels (NR = 16): t (MR × 16, row-major, 32-byte aligned) <- a_panel
// (kc × MR) · b_panel (kc × 16), each element one FMA chain over k in order (as the AVX-512
// kernels, core/cpu/sgemm_avx512.cpp). Kept apart from the update (noinline) so that nothing
// else competes for the 16 ymm registers: for MR = 6, 12 accumulators, 2 of B, 1 broadcast of
// A. MR = 4 (8 accumulators) serves products of few rows that 4 divides better (8, 20).
template <int MR>
__attribute__((noinline)) void avx2_kernel(int64_t kc, const float* a, const float* b, float* t) {
  __m256 c0[MR], c1[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) c0[r] = c1[r] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += 16) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m256 x = _mm256_broadcast_ss(a + r);
      c0[r] = _mm256_fmadd_ps(x, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(x, b1, c1[r]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(t + r * 16, c0[r]);
    _mm256_store_ps(t + r * 16 + 8, c1[r]);
  }
}

// C[0 : mr, 0 : nr] (row stride ldc) <- update(C, t): whole rows of NR as vectors, the columns
// of an edge block one by one (the same roundings either way).
template <int64_t NR>
void update_c(const float* t, float* c, int64_t ldc, int64_t mr, int64_t nr, Update u,
              float alpha, float beta) {
  const bool unit_alpha = alpha == 1.f;
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int64_t r = 0; r < mr; ++r) {
    float* row = c + r * ldc;
    const float* acc = t + r * NR;
    if (nr == NR) {
      for (int64_t v = 0; v < NR; v += 8)
        _mm256_storeu_ps(row + v, combine(_mm256_load_ps(acc + v), row + v, u, va, vb, unit_alpha));
    } else {
      for (int64_t j = 0; j < nr; ++j) row[j] = combine(acc[j], row[j], u, alpha, beta, unit_alpha);
    }
  }
}

thread_local PackBuffer tl_pack_a, tl_pack_b;

// C[m0 : m1, n0 : n1] of one batch entry, with micro-kernels NR columns wide.
template <int64_t NR>
void gemm_tile(const Operands& o, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t kc_max = std::min(KC, o.K);
  float* bp = tl_pack_b.get(kc_max * ((std::min(NC, n1 - n0) + NR - 1) / NR * NR));
  const int64_t mr = o.mr, mc_max = MC / mr * mr;  // whole panels per block of A
  float* ap = tl_pack_a.get(kc_max * ((std::min(mc_max, m1 - m0) + mr - 1) / mr * mr) + 8);
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < o.K; pc += KC) {
      const int64_t kc = std::min(KC, o.K - pc);
      const Update u = pc > 0 ? Update::add : o.beta == 0.f ? Update::set : Update::scale;
      pack_b<NR>(bp, o, pc, kc, jc, nc);
      for (int64_t ic = m0; ic < m1; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m1 - ic);
        pack_a(ap, o, ic, mc, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const float* bpanel = bp + (jr / NR) * kc * NR;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            alignas(64) float t[kMaxMr * NR];
            o.kernel(kc, ap + (ir / mr) * kc * mr, bpanel, t);
            update_c<NR>(t, o.c + (ic + ir) * o.N + jc + jr, o.N, std::min(mr, mc - ir),
                         std::min(NR, nc - jr), u, o.alpha, o.beta);
          }
        }
      }
    }
  }
}

// C = beta·C over the tile (K = 0: an empty sum; beta = 0 writes zeros without reading C).
void scale_tile(const Operands& o, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  for (int64_t i = m0; i < m1; ++i)
    for (int64_t j = n0; j < n1; ++j) {
      float& x = o.c[i * o.N + j];
      x = o.beta == 0.f ? 0.f : o.beta * x;
    }
}

// One instruction set's micro-kernels, by height. Per row of C they run at about the same
// speed, except the 4-row ones (8 accumulators, too few to hide the FMA latency), about 10%
// slower (docs/performance.md); so a product's panels are the height that computes the fewest
// padding rows, a 4-row panel counting 1.1, the taller one on a tie.
struct Kernels {
  static constexpr int kMax = 6;
  int count = 0;
  int64_t rows[kMax] = {};
  SgemmMicroKernel fn[kMax] = {};
  void add(int64_t r, SgemmMicroKernel f) {
    if (f && count < kMax) rows[count] = r, fn[count++] = f;
  }
  // The index of the height for a product of M rows.
  int pick(int64_t M) const {
    int best = 0;
    double best_cost = 0;
    for (int i = 0; i < count; ++i) {
      const double cost = double((M + rows[i] - 1) / rows[i] * rows[i]) * (rows[i] == 4 ? 1.1 : 1.0);
      if (i == 0 || cost < best_cost || (cost == best_cost && rows[i] > rows[best])) best = i, best_cost = cost;
    }
    return best;
  }
};

constexpr int64_t kSplitMacs = int64_t(1) << 20;  // below this a product is one tile
constexpr int64_t kTileMacs = int64_t(1) << 19;   // about this much work per tile above it
constexpr int64_t kMinTile = 32;                  // rows or columns of C per tile, at least

// How one product's C is cut: `tiles` blocks of whole panels (`rows` rows, or NR columns)
// along its longer side, tile t owning panels [t·panels / tiles, (t+1)·panels / tiles), so the
// tiles differ by one panel at most. Each tile packs the operand it shares with the others
// again, so there are no more tiles than threads that can run them (one inside another
// parallel loop, such as a convolution's loop over chunks). The bits of C depend on none of
// this (file comment), which tests/thread_count_test.cpp checks at 1, 2 and 5 threads.
struct Tiling {
  bool split_rows = true;
  int64_t unit = 1, panels = 1, tiles = 1;
  int64_t begin(int64_t t) const { return t * panels / tiles * unit; }
};

Tiling tiling_for(int64_t M, int64_t N, int64_t K, int64_t rows, int64_t nr, int64_t threads) {
  Tiling t;
  t.split_rows = M >= N;
  const int64_t side = t.split_rows ? M : N;
  t.unit = t.split_rows ? rows : nr;
  t.panels = (side + t.unit - 1) / t.unit;
  const int64_t macs = M * N * K;
  if (macs < kSplitMacs || side < 2 * kMinTile) return t;
  const int64_t want = std::min({(macs + kTileMacs - 1) / kTileMacs, side / kMinTile, threads});
  t.tiles = std::max<int64_t>(1, std::min(want, t.panels));
  return t;
}

template <int64_t NR>
void run(const float* a, const float* b, float* c, const MatmulParams& p, const Kernels& ks) {
  const int which = ks.pick(p.M);
  const int64_t rows = ks.rows[which];
  const SgemmMicroKernel kernel = ks.fn[which];
  // Threads per batch entry: batch entries already run in parallel.
  const int64_t threads = inside_parallel_loop() ? 1 : num_threads();
  const Tiling tl = tiling_for(p.M, p.N, p.K, rows, NR, (threads + p.batch - 1) / p.batch);
  const int64_t items = p.batch * tl.tiles;
  const int64_t grain =
      tl.tiles > 1 ? 1 : grain_for(p.M * p.N * std::max<int64_t>(p.K, 1), kSplitMacs);
  parallel_for(items, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t i = item / tl.tiles, tile = item % tl.tiles;
      const Operands o{a + i * p.stride_a, b + i * p.stride_b, c + i * p.stride_c,
                       p.M, p.N, p.K, p.trans_a, p.trans_b,
                       static_cast<float>(p.alpha), static_cast<float>(p.beta), rows, kernel};
      const int64_t lo_edge = tl.begin(tile);
      const int64_t hi_edge = std::min(tl.split_rows ? p.M : p.N, tl.begin(tile + 1));
      const int64_t m0 = tl.split_rows ? lo_edge : 0, m1 = tl.split_rows ? hi_edge : p.M;
      const int64_t n0 = tl.split_rows ? 0 : lo_edge, n1 = tl.split_rows ? p.N : hi_edge;
      if (p.K == 0)
        scale_tile(o, m0, m1, n0, n1);
      else
        gemm_tile<NR>(o, m0, m1, n0, n1);
    }
  });
}

const Kernels& avx2_kernels() {
  static const Kernels k = [] {
    Kernels ks;
    ks.add(6, avx2_kernel<6>);
    ks.add(4, avx2_kernel<4>);
    return ks;
  }();
  return k;
}

// The AVX-512 kernels (32 columns, core/cpu/sgemm_avx512.cpp).
const Kernels& avx512_kernels() {
  static const Kernels k = [] {
    Kernels ks;
    for (int64_t r : {14, 12, 10, 8, 6, 4}) ks.add(r, sgemm_avx512_kernel(r));
    return ks;
  }();
  return k;
}

}  // namespace

bool sgemm_packed_avx512_available() {
  static const bool ok = sgemm_avx512_kernel(4) != nullptr && cpu_supports_avx512f();
  return ok;
}

void sgemm_packed(const float* a, const float* b, float* c, const MatmulParams& p, SgemmIsa isa) {
  if (isa == SgemmIsa::avx512 && !sgemm_packed_avx512_available())
    fail("matmul", sgemm_avx512_kernel(4) == nullptr
                       ? "the AVX-512 packed GEMM was asked for, but this build has none (IDEM_CPU_AVX512=OFF)"
                       : "the AVX-512 packed GEMM was asked for, but this CPU lacks AVX-512F");
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  const bool wide = isa == SgemmIsa::avx512 || (isa == SgemmIsa::best && sgemm_packed_avx512_available());
  if (wide)
    run<32>(a, b, c, p, avx512_kernels());
  else
    run<16>(a, b, c, p, avx2_kernels());
}

#else  // no AVX2 + FMA in this build: Eigen does every product

bool sgemm_packed_available() { return false; }

bool sgemm_packed_avx512_available() { return false; }

void sgemm_packed(const float*, const float*, float*, const MatmulParams&, SgemmIsa) {
  fail("matmul", "the packed CPU GEMM needs a build with IDEM_CPU_AVX2=ON");
}

#endif

}  // namespace idem::cpu
