// frl_native::small_mm(a [M, K], b [K, N]) -> [M, N] in float32: a product of a few hundred rows
// or less with AVX-512 kernels, for the products below frl._inductor's oneDNN threshold.
//
// Why: torch's CPU wheel multiplies float32 matrices with MKL, whose kernels on AMD processors
// are its AVX2 ones (mkl_blas_def_sgemm_kernel_0_zen) even where the core has AVX-512; for a
// one-seed PPO update's products (a minibatch of 128 rows by 64x64 layers: forward, input and
// weight gradients) that was ~1.1 ms of a ~4.5 ms iteration. oneDNN's AVX-512 kernels cost ~11 us
// of set-up a call, more than these products take. Measured on an AMD EPYC (Zen 5) core, one
// thread, through the dispatcher: 128x64 by 64x64 11.1 us through MKL against 5.3 here (6.7 with
// the weight stored by columns, F.linear's layout, which is packed first), 64x128 by 128x64 (a
// weight gradient, a by columns) 11.1 against 5.4, 512x64 by 64x64 40.2 against 18.8.
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
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0),
              "small_mm: [M, K] @ [K, N] expected, got ", a.sizes(), " and ", b.sizes());
  const bool takes = vectorised() && a.scalar_type() == torch::kFloat32 && b.scalar_type() == torch::kFloat32 &&
                     a.device().is_cpu() && b.device().is_cpu();
  if (!takes) return at::mm(a, b);
  const int64_t M = a.size(0), K = a.size(1), N = b.size(1);
  auto out = torch::empty({M, N}, a.options());
  if (out.numel() == 0) return out;
  if (K == 0) return out.zero_();
#ifdef FRL_SMALL_MM_X86
  const float* pb = b.data_ptr<float>();
  int64_t ldb = b.stride(0);
  std::vector<float> panel;
  if (N > 1 && b.stride(1) != 1) {  // b by columns (or strided): copied to a [K, N] panel
    panel.resize(static_cast<size_t>(K * N));
    const int64_t sk = b.stride(0), sn = b.stride(1);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) panel[k * N + n] = pb[k * sk + n * sn];
    pb = panel.data();
    ldb = N;
  }
  product(a.data_ptr<float>(), a.stride(0), a.stride(1), pb, ldb, M, K, N, out.data_ptr<float>());
#endif
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) {
  m.def("small_mm(Tensor a, Tensor b) -> Tensor");
  m.def("small_mm_vectorised() -> bool", &vectorised);  // whether the AVX-512 kernels run here
}
TORCH_LIBRARY_IMPL(frl_native, CPU, m) { m.impl("small_mm", &small_mm); }
