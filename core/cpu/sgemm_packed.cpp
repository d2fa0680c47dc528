// The packed f32 GEMM of the CPU (AVX2 + FMA), BLIS-style: C = alpha·op(A)·op(B) + beta·C.
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
// The micro-kernel (6×16): 12 ymm accumulators (6 rows × 2 vectors of 8), per k two loads of B
// and six broadcasts of A, 12 fused multiply-adds. Products of few rows whose count 4 divides
// better than 6 (8, 20, 28) use a 4×16 kernel instead (panel_rows).
//
// Summation order (why the bits do not depend on the tiling or the thread count): element
// C[i, j] is, for each KC block of K in increasing order, a chain of FMAs over that block's k in
// increasing order starting from 0 (acc), then
//   first block:  C = alpha·acc            (beta = 0: C is never read)
//                 C = beta·C + alpha·acc   (otherwise)
//   later blocks: C = C + alpha·acc
// That depends on K and KC only: not on i, j, on where the tile or panel boundaries fall, or on
// the thread count. Contraction is off for this file (CMakeLists.txt), so the scalar edge code
// rounds exactly as the vector code does.
//
// Threads: C is cut into tiles along its longer side (rows or columns; never K), the tiles and
// batch entries run on our pool (core/parallel.h), each tile packing its own panels into
// buffers of the thread that runs it.
#include <algorithm>
#include <cstdlib>
#include <new>

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

constexpr int64_t MR = 6, NR = 16;
constexpr int64_t MR4 = 4;   // the 4×16 micro-kernel's rows, for products with few rows
constexpr int64_t KC = 256;  // a packed B panel (KC × NR, 16 KiB) stays in L1 over a row of A panels
constexpr int64_t MC = 144;  // packed A block (MC × KC, 144 KiB) stays in L2
constexpr int64_t NC = 3072; // packed B block (KC × NC, 3 MiB) stays in L3

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
  int64_t mr;  // rows per A panel: MR, or MR4 for products with few rows (panel_rows)
};

// d[0..7] (rows 8 apart by `ld`) <- the 8×8 transpose of the rows s[0..7] (8 floats each, `sld`
// apart): d row c holds element c of every source row.
inline void transpose8x8(const float* s, int64_t sld, float* d, int64_t ld) {
  __m256 r0 = _mm256_loadu_ps(s + 0 * sld), r1 = _mm256_loadu_ps(s + 1 * sld);
  __m256 r2 = _mm256_loadu_ps(s + 2 * sld), r3 = _mm256_loadu_ps(s + 3 * sld);
  __m256 r4 = _mm256_loadu_ps(s + 4 * sld), r5 = _mm256_loadu_ps(s + 5 * sld);
  __m256 r6 = _mm256_loadu_ps(s + 6 * sld), r7 = _mm256_loadu_ps(s + 7 * sld);
  const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
  const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
  const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
  const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
  r0 = _mm256_shuffle_ps(t0, t2, 0x44), r1 = _mm256_shuffle_ps(t0, t2, 0xEE);
  r2 = _mm256_shuffle_ps(t1, t3, 0x44), r3 = _mm256_shuffle_ps(t1, t3, 0xEE);
  r4 = _mm256_shuffle_ps(t4, t6, 0x44), r5 = _mm256_shuffle_ps(t4, t6, 0xEE);
  r6 = _mm256_shuffle_ps(t5, t7, 0x44), r7 = _mm256_shuffle_ps(t5, t7, 0xEE);
  _mm256_storeu_ps(d + 0 * ld, _mm256_permute2f128_ps(r0, r4, 0x20));
  _mm256_storeu_ps(d + 1 * ld, _mm256_permute2f128_ps(r1, r5, 0x20));
  _mm256_storeu_ps(d + 2 * ld, _mm256_permute2f128_ps(r2, r6, 0x20));
  _mm256_storeu_ps(d + 3 * ld, _mm256_permute2f128_ps(r3, r7, 0x20));
  _mm256_storeu_ps(d + 4 * ld, _mm256_permute2f128_ps(r0, r4, 0x31));
  _mm256_storeu_ps(d + 5 * ld, _mm256_permute2f128_ps(r1, r5, 0x31));
  _mm256_storeu_ps(d + 6 * ld, _mm256_permute2f128_ps(r2, r6, 0x31));
  _mm256_storeu_ps(d + 7 * ld, _mm256_permute2f128_ps(r3, r7, 0x31));
}

// dst (panels of kc × o.mr) <- op(A)[i0 : i0 + mc, k0 : k0 + kc], zero rows past mc. The buffer
// has 8 floats of slack past the last panel (the vector path stores 8 for a row of 6).
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
    // A stored (M, K): op(A)[i, k] = A[i·K + k]. Full panels: 8 k at a time, the mr rows plus
    // 8 − mr rows read again (and dropped) through an 8×8 transpose; each k row stores 8
    // floats, the last 8 − mr of which the next k row (or the next panel) overwrites.
    const float* src = o.a + (i0 + p) * o.K + k0;
    int64_t k = 0;
    if (rows == mr) {
      alignas(32) float t[8 * 8];
      for (; k + 8 <= kc; k += 8) {
        // rows mr..7 of the transpose repeat row mr − 1: any readable row will do.
        alignas(32) float blk[8 * 8];
        for (int64_t r = 0; r < 8; ++r)
          _mm256_store_ps(blk + r * 8, _mm256_loadu_ps(src + std::min<int64_t>(r, mr - 1) * o.K + k));
        transpose8x8(blk, 8, t, 8);
        for (int64_t j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (k + j) * mr, _mm256_load_ps(t + j * 8));
      }
    }
    for (; k < kc; ++k)
      for (int64_t r = 0; r < mr; ++r) dst[k * mr + r] = r < rows ? src[r * o.K + k] : 0.f;
  }
}

// dst (panels of kc × NR) <- op(B)[k0 : k0 + kc, j0 : j0 + nc], zero columns past nc.
void pack_b(float* dst, const Operands& o, int64_t k0, int64_t kc, int64_t j0, int64_t nc) {
  if (!o.trans_b) {
    // B stored (K, N): op(B)[k, j] = B[k·N + j]. Groups of up to 8 full panels per pass over k,
    // so each row of B is read 128 floats at a time (not 16 floats at a stride of N).
    const int64_t full = nc / NR;
    for (int64_t g = 0; g < full; g += 8) {
      const int64_t panels = std::min<int64_t>(8, full - g);
      for (int64_t k = 0; k < kc; ++k) {
        const float* src = o.b + (k0 + k) * o.N + j0 + g * NR;
        for (int64_t q = 0; q < panels; ++q) {
          float* d = dst + (g + q) * kc * NR + k * NR;
          _mm256_store_ps(d, _mm256_loadu_ps(src + q * NR));
          _mm256_store_ps(d + 8, _mm256_loadu_ps(src + q * NR + 8));
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
  // B stored (N, K): op(B)[k, j] = B[j·K + k]. A full panel's 16 rows of B, 8 k at a time, go
  // through two 8×8 transposes.
  for (int64_t p = 0; p < nc; p += NR, dst += kc * NR) {
    const int64_t cols = std::min(NR, nc - p);
    const float* src = o.b + (j0 + p) * o.K + k0;
    int64_t k = 0;
    if (cols == NR)
      for (; k + 8 <= kc; k += 8) {
        transpose8x8(src + k, o.K, dst + k * NR, NR);
        transpose8x8(src + 8 * o.K + k, o.K, dst + k * NR + 8, NR);
      }
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

// t (MR × NR, row-major, 32-byte aligned) <- a_panel(kc × MR) · b_panel(kc × NR), each element
// one FMA chain over k in order. Kept apart from the update (noinline) so that nothing else
// competes for the 16 ymm registers: 12 accumulators, 2 of B, 1 broadcast of A.
__attribute__((noinline)) void micro_kernel(int64_t kc, const float* a, const float* b, float* t) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
  }
  _mm256_store_ps(t + 0, c00), _mm256_store_ps(t + 8, c01);
  _mm256_store_ps(t + 16, c10), _mm256_store_ps(t + 24, c11);
  _mm256_store_ps(t + 32, c20), _mm256_store_ps(t + 40, c21);
  _mm256_store_ps(t + 48, c30), _mm256_store_ps(t + 56, c31);
  _mm256_store_ps(t + 64, c40), _mm256_store_ps(t + 72, c41);
  _mm256_store_ps(t + 80, c50), _mm256_store_ps(t + 88, c51);
}

// The same for a 4-row panel (t: 4 × NR): 8 accumulators. Products with 8, 20 or 28 rows
// (panel_rows) fit 4-row panels exactly where 6-row ones would compute padding.
__attribute__((noinline)) void micro_kernel4(int64_t kc, const float* a, const float* b, float* t) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; ++k, a += MR4, b += NR) {
    const __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
  }
  _mm256_store_ps(t + 0, c00), _mm256_store_ps(t + 8, c01);
  _mm256_store_ps(t + 16, c10), _mm256_store_ps(t + 24, c11);
  _mm256_store_ps(t + 32, c20), _mm256_store_ps(t + 40, c21);
  _mm256_store_ps(t + 48, c30), _mm256_store_ps(t + 56, c31);
}

// C[0 : mr, 0 : nr] (row stride ldc) <- update(C, t): whole rows of 16 as vectors, the columns
// of an edge block one by one (the same roundings either way).
void update_c(const float* t, float* c, int64_t ldc, int64_t mr, int64_t nr, Update u,
              float alpha, float beta) {
  const bool unit_alpha = alpha == 1.f;
  const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
  for (int64_t r = 0; r < mr; ++r) {
    float* row = c + r * ldc;
    const float* acc = t + r * NR;
    if (nr == NR) {
      const __m256 lo = combine(_mm256_load_ps(acc), row, u, va, vb, unit_alpha);
      const __m256 hi = combine(_mm256_load_ps(acc + 8), row + 8, u, va, vb, unit_alpha);
      _mm256_storeu_ps(row, lo);
      _mm256_storeu_ps(row + 8, hi);
    } else {
      for (int64_t j = 0; j < nr; ++j) row[j] = combine(acc[j], row[j], u, alpha, beta, unit_alpha);
    }
  }
}

thread_local PackBuffer tl_pack_a, tl_pack_b;

// C[m0 : m1, n0 : n1] of one batch entry.
void gemm_tile(const Operands& o, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t kc_max = std::min(KC, o.K);
  float* bp = tl_pack_b.get(kc_max * ((std::min(NC, n1 - n0) + NR - 1) / NR * NR));
  const int64_t mr = o.mr;
  float* ap = tl_pack_a.get(kc_max * ((std::min(MC, m1 - m0) + mr - 1) / mr * mr) + 8);
  for (int64_t jc = n0; jc < n1; jc += NC) {
    const int64_t nc = std::min(NC, n1 - jc);
    for (int64_t pc = 0; pc < o.K; pc += KC) {
      const int64_t kc = std::min(KC, o.K - pc);
      const Update u = pc > 0 ? Update::add : o.beta == 0.f ? Update::set : Update::scale;
      pack_b(bp, o, pc, kc, jc, nc);
      for (int64_t ic = m0; ic < m1; ic += MC) {
        const int64_t mc = std::min(MC, m1 - ic);
        pack_a(ap, o, ic, mc, pc, kc);
        for (int64_t jr = 0; jr < nc; jr += NR) {
          const float* bpanel = bp + (jr / NR) * kc * NR;
          for (int64_t ir = 0; ir < mc; ir += mr) {
            alignas(32) float t[MR * NR];
            if (mr == MR)
              micro_kernel(kc, ap + (ir / mr) * kc * mr, bpanel, t);
            else
              micro_kernel4(kc, ap + (ir / mr) * kc * mr, bpanel, t);
            update_c(t, o.c + (ic + ir) * o.N + jc + jr, o.N, std::min(mr, mc - ir),
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

// Rows per A panel for a product of M rows: 4 where that computes fewer padding rows than 6
// and M is small (M = 8, 20, 28, ...), else 6 (the faster kernel: 12 accumulators, not 8).
int64_t panel_rows(int64_t M) {
  const int64_t pad6 = (M + MR - 1) / MR * MR, pad4 = (M + MR4 - 1) / MR4 * MR4;
  return M <= 32 && pad4 < pad6 ? MR4 : MR;
}

constexpr int64_t kSplitMacs = int64_t(1) << 20;  // below this a product is one tile
constexpr int64_t kTileMacs = int64_t(1) << 19;   // about this much work per tile above it
constexpr int64_t kMinTile = 32;                  // rows or columns of C per tile, at least

// How one product's C is cut: `tiles` blocks of whole panels (panel_rows rows, or NR columns)
// along its longer side, tile t owning panels [t·panels / tiles, (t+1)·panels / tiles), so the
// tiles differ by one panel at most. Depends on (M, N, K) only.
struct Tiling {
  bool split_rows = true;
  int64_t unit = 1, panels = 1, tiles = 1;
  int64_t begin(int64_t t) const { return t * panels / tiles * unit; }
};

Tiling tiling_for(int64_t M, int64_t N, int64_t K) {
  Tiling t;
  t.split_rows = M >= N;
  const int64_t side = t.split_rows ? M : N;
  t.unit = t.split_rows ? panel_rows(M) : NR;
  t.panels = (side + t.unit - 1) / t.unit;
  const int64_t macs = M * N * K;
  if (macs < kSplitMacs || side < 2 * kMinTile) return t;
  const int64_t want = std::min((macs + kTileMacs - 1) / kTileMacs, side / kMinTile);
  t.tiles = std::max<int64_t>(1, std::min(want, t.panels));
  return t;
}

}  // namespace

void sgemm_packed(const float* a, const float* b, float* c, const MatmulParams& p) {
  if (p.batch == 0 || p.M == 0 || p.N == 0) return;
  const Tiling tl = tiling_for(p.M, p.N, p.K);
  const int64_t items = p.batch * tl.tiles;
  const int64_t grain =
      tl.tiles > 1 ? 1 : grain_for(p.M * p.N * std::max<int64_t>(p.K, 1), kSplitMacs);
  parallel_for(items, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t item = lo; item < hi; ++item) {
      const int64_t i = item / tl.tiles, tile = item % tl.tiles;
      const Operands o{a + i * p.stride_a, b + i * p.stride_b, c + i * p.stride_c,
                       p.M, p.N, p.K, p.trans_a, p.trans_b,
                       static_cast<float>(p.alpha), static_cast<float>(p.beta), panel_rows(p.M)};
      const int64_t lo_edge = tl.begin(tile);
      const int64_t hi_edge = std::min(tl.split_rows ? p.M : p.N, tl.begin(tile + 1));
      const int64_t m0 = tl.split_rows ? lo_edge : 0, m1 = tl.split_rows ? hi_edge : p.M;
      const int64_t n0 = tl.split_rows ? 0 : lo_edge, n1 = tl.split_rows ? p.N : hi_edge;
      if (p.K == 0)
        scale_tile(o, m0, m1, n0, n1);
      else
        gemm_tile(o, m0, m1, n0, n1);
    }
  });
}

#else  // no AVX2 + FMA in this build: Eigen does every product

bool sgemm_packed_available() { return false; }

void sgemm_packed(const float*, const float*, float*, const MatmulParams&) {
  fail("matmul", "the packed CPU GEMM needs a build with IDEM_CPU_AVX2=ON");
}

#endif

}  // namespace idem::cpu
