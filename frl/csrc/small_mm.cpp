// frl_native::small_mm(a [M, K], b [K, N]) -> [M, N] in float32, or batched (a [B, M, K], b [B,
// K, N]): products of a few hundred rows or less with AVX-512 kernels, for the 2-D products below
// frl._inductor's oneDNN threshold and the batched ones of small members.
//
// Why: torch's CPU wheel multiplies float32 matrices with MKL, whose kernels on AMD processors
// are its AVX2 ones (mkl_blas_def_sgemm_kernel_0_zen) even where the core has AVX-512; for a
// one-seed PPO update's products (a minibatch of 128 rows by 64x64 layers: forward, input and
// weight gradients) that was ~1.1 ms of a ~4.5 ms iteration. oneDNN's AVX-512 kernels cost ~11 us
// of set-up a call, more than these products take. Measured on an AMD EPYC (Zen 5) core, one
// thread, through the dispatcher: 128x64 by 64x64 11.1 us through MKL against 5.3 here (6.7 with
// the weight stored by columns, F.linear's layout, which is packed first), 64x128 by 128x64 (a
// weight gradient, a by columns) 11.1 against 5.4, 512x64 by 64x64 40.2 against 18.8. Batched, the
// products of a vmapped update go to oneDNN, whose set-up is paid once a call: 32 members of 128x64
// by 64x64 147 us there against 132-134 here (141 with the weight by columns), 32 of 64x128 by
// 128x64 160-163 against 134, 32 of 128x4 by 4x64 27-35 against 19.
//
// The kernel: 8 rows by 32 columns of accumulators (16 AVX-512 registers), over k in order: each
// step loads 32 of b's row k and broadcasts one a[m, k] per row, so a may have any strides and b
// must be dense along n (b by columns is copied to a [K, N] panel first). Each output sums its k
// products in order with a fused multiply-add, as MKL's kernels do; results may differ from
// torch.mm's in the last bits. Other dtypes, layouts and processors without AVX-512 take
// torch.mm (the call frl._inductor would otherwise make).
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FRL_SMALL_MM_X86 1
#endif

namespace {

#ifdef FRL_SMALL_MM_X86
#define FRL_AVX512 __attribute__((target("avx512f")))

constexpr int kTileRows = 8;

// C [R, 16 V] (row stride ldc) = A [R, K] (element (r, k) at A + r * sam + k * sak) times
// B [K, 16 V] (row k at B + k * ldb, contiguous); `last` masks the last vector's columns.
template <int R, int V>
FRL_AVX512 void tile(const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb, int64_t K,
                     float* C, int64_t ldc, __mmask16 last) {
  __m512 acc[R][V];
  _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 2") for (int v = 0; v < V; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 b[V];
    _Pragma("GCC unroll 2") for (int v = 0; v < V; ++v) b[v] =
        v + 1 < V ? _mm512_loadu_ps(B + k * ldb + 16 * v) : _mm512_maskz_loadu_ps(last, B + k * ldb + 16 * v);
    const float* a = A + k * sak;
    _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r * sam]);
      _Pragma("GCC unroll 2") for (int v = 0; v < V; ++v) acc[r][v] = _mm512_fmadd_ps(av, b[v], acc[r][v]);
    }
  }
  _Pragma("GCC unroll 8") for (int r = 0; r < R; ++r)
    _Pragma("GCC unroll 2") for (int v = 0; v < V; ++v) {
      if (v + 1 < V) {
        _mm512_storeu_ps(C + r * ldc + 16 * v, acc[r][v]);
      } else {
        _mm512_mask_storeu_ps(C + r * ldc + 16 * v, last, acc[r][v]);
      }
    }
}

// Every row of C for one block of 16 V columns: tiles of 8 rows, then the rows left.
template <int V>
FRL_AVX512 void column_block(const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb, int64_t M,
                             int64_t K, float* C, int64_t ldc, __mmask16 last) {
  int64_t m = 0;
  for (; m + kTileRows <= M; m += kTileRows) tile<kTileRows, V>(A + m * sam, sam, sak, B, ldb, K, C + m * ldc, ldc, last);
  const float* a = A + m * sam;
  float* c = C + m * ldc;
  switch (M - m) {
    case 0: break;
    case 1: tile<1, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    case 2: tile<2, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    case 3: tile<3, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    case 4: tile<4, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    case 5: tile<5, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    case 6: tile<6, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
    default: tile<7, V>(a, sam, sak, B, ldb, K, c, ldc, last); break;
  }
}

__mmask16 first_lanes(int64_t n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

// The 16x16 block at src (row stride ss) transposed into dst (row stride ds).
FRL_AVX512 void transpose16(const float* src, int64_t ss, float* dst, int64_t ds) {
  __m512 r[16], t[16], u[16];
  _Pragma("GCC unroll 16") for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * ss);
  // pairs of rows interleaved within each 128-bit lane
  _Pragma("GCC unroll 8") for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // u[4 i + j], lane L: column 4 L + j of rows 4 i .. 4 i + 3
  _Pragma("GCC unroll 4") for (int i = 0; i < 4; ++i) {
    u[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  // column 4 L + j: lane L of u[j], u[4 + j], u[8 + j], u[12 + j]
  _Pragma("GCC unroll 4") for (int j = 0; j < 4; ++j) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0x44), x1 = _mm512_shuffle_f32x4(u[j], u[4 + j], 0xEE);
    const __m512 y0 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0x44);
    const __m512 y1 = _mm512_shuffle_f32x4(u[8 + j], u[12 + j], 0xEE);
    _mm512_storeu_ps(dst + (0 + j) * ds, _mm512_shuffle_f32x4(x0, y0, 0x88));
    _mm512_storeu_ps(dst + (4 + j) * ds, _mm512_shuffle_f32x4(x0, y0, 0xDD));
    _mm512_storeu_ps(dst + (8 + j) * ds, _mm512_shuffle_f32x4(x1, y1, 0x88));
    _mm512_storeu_ps(dst + (12 + j) * ds, _mm512_shuffle_f32x4(x1, y1, 0xDD));
  }
}

// panel [K, N] (row stride N) = b (element (k, n) at b + k * sk + n * sn); b dense along k (sk ==
// 1) is transposed 16x16 blocks at a time.
FRL_AVX512 void pack(const float* b, int64_t sk, int64_t sn, int64_t K, int64_t N, float* panel) {
  int64_t n16 = 0, k16 = 0;
  if (sk == 1) {
    n16 = N / 16 * 16, k16 = K / 16 * 16;
    for (int64_t n = 0; n < n16; n += 16)
      for (int64_t k = 0; k < k16; k += 16) transpose16(b + n * sn + k, sn, panel + k * N + n, N);
  }
  for (int64_t n = 0; n < N; ++n)  // what the blocks left: columns past n16, and rows past k16
    for (int64_t k = n < n16 ? k16 : 0; k < K; ++k) panel[k * N + n] = b[k * sk + n * sn];
}

FRL_AVX512 void product(const float* A, int64_t sam, int64_t sak, const float* B, int64_t ldb, int64_t M,
                        int64_t K, int64_t N, float* C) {
  for (int64_t n0 = 0; n0 < N; n0 += 32) {
    const int64_t columns = std::min<int64_t>(32, N - n0);
    if (columns > 16) {
      column_block<2>(A, sam, sak, B + n0, ldb, M, K, C + n0, N, first_lanes(columns - 16));
    } else {
      column_block<1>(A, sam, sak, B + n0, ldb, M, K, C + n0, N, first_lanes(columns));
    }
  }
}
#endif

bool vectorised() {
#ifdef FRL_SMALL_MM_X86
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512;
#else
  return false;
#endif
}

torch::Tensor small_mm(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK((a.dim() == 2 && b.dim() == 2) || (a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0)),
              "small_mm: [M, K] @ [K, N] or [B, M, K] @ [B, K, N] expected, got ", a.sizes(), " and ", b.sizes());
  TORCH_CHECK(a.size(-1) == b.size(-2), "small_mm: contraction sizes differ: ", a.sizes(), " and ", b.sizes());
  const bool takes = vectorised() && a.scalar_type() == torch::kFloat32 && b.scalar_type() == torch::kFloat32 &&
                     a.device().is_cpu() && b.device().is_cpu();
  if (!takes) return a.dim() == 2 ? at::mm(a, b) : at::bmm(a, b);
  const bool batched = a.dim() == 3;
  const int64_t B = batched ? a.size(0) : 1, M = a.size(-2), K = a.size(-1), N = b.size(-1);
  auto shape = a.sizes().vec();
  shape.back() = N;
  auto out = torch::empty(shape, a.options());
  if (out.numel() == 0) return out;
  if (K == 0) return out.zero_();
#ifdef FRL_SMALL_MM_X86
  const int64_t sam = a.stride(-2), sak = a.stride(-1), sbk = b.stride(-2), sbn = b.stride(-1);
  const int64_t sab = batched ? a.stride(0) : 0, sbb = batched ? b.stride(0) : 0;
  const bool by_columns = N > 1 && sbn != 1;  // copied to a [K, N] panel first
  std::vector<float> panel(by_columns ? static_cast<size_t>(K * N) : 0);
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < B; ++i) {
    const float* bi = pb + i * sbb;
    int64_t ldb = sbk;
    if (by_columns) {
      if (i == 0 || sbb != 0) pack(bi, sbk, sbn, K, N, panel.data());  // a shared weight: once
      bi = panel.data();
      ldb = N;
    }
    product(pa + i * sab, sam, sak, bi, ldb, M, K, N, po + i * M * N);
  }
#endif
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) {
  m.def("small_mm(Tensor a, Tensor b) -> Tensor");
  m.def("small_mm_vectorised() -> bool", &vectorised);  // whether the AVX-512 kernels run here
}
TORCH_LIBRARY_IMPL(frl_native, CPU, m) { m.impl("small_mm", &small_mm); }
