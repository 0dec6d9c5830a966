// frl_native::small_rows_bmm(a [B, M, K], b [B, K, N]) -> [B, M, N] in float32: a batched product
// of few rows whose b is stored by columns (b[i, k, n] at i * s0 + n * s2 + k: F.linear's
// weight, transposed, which is how a vmapped layer multiplies), with AVX-512 kernels.
//
// Why: a vmapped policy acting in 4 environments multiplies 4 rows per member. torch's bmm hands
// each member to MKL, which packs the weight on every call (mkl_blas_def_sgemm_pst and
// sgemm_scopy_right16 in a profile): 32 members of 4x64 by 64x64 took 17.4 us, 4x4 by 4x64 3.8 us
// and 4x64 by 64x2 2.9 us (one AMD EPYC core), three such calls a step in a 32-seed PPO
// collection. Here each output is a dot product of two contiguous rows: a 4-row by 4-column block
// of 16 AVX-512 accumulators over the contraction, folded to 16 sums at the end; a contraction of
// at most 16 (a layer over a few observations) gathers 16 columns' weights per k instead.
//
// Other layouts, other dtypes and processors without AVX-512 take torch's bmm (the same call
// frl._inductor would otherwise make); frl._inductor routes only the products this kernel takes.
#include <torch/extension.h>

#include <algorithm>
#include <cstdint>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define FRL_SMALL_ROWS_X86 1
#endif

namespace {

constexpr int kRows = 4;  // rows per block (and columns per block of the dot-product kernel)

#ifdef FRL_SMALL_ROWS_X86
#define FRL_AVX512 __attribute__((target("avx512f")))

// The 16 lanes of v folded to 4 partial sums (lanes i, i + 4, i + 8, i + 12 added).
FRL_AVX512 inline __m128 fold(__m512 v) {
  const __m256 lo = _mm512_castps512_ps256(v);
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m256 s = _mm256_add_ps(lo, hi);
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// O [M, N] (row stride N) = A [M, K] (rows at A + m * am, contiguous) times the columns of W
// (column n at W + n * wn, contiguous along k): 4 columns at a time, 16 k at a time.
template <int M>
FRL_AVX512 void dot_block(const float* A, int64_t am, const float* W, int64_t wn, int64_t K, int64_t N,
                          float* O) {
  for (int64_t n0 = 0; n0 < N; n0 += kRows) {
    const float* w[kRows];
    _Pragma("GCC unroll 4") for (int j = 0; j < kRows; ++j) w[j] = W + std::min<int64_t>(n0 + j, N - 1) * wn;  // past N: repeat
    __m512 acc[M][kRows];
    _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m)
      _Pragma("GCC unroll 4") for (int j = 0; j < kRows; ++j) acc[m][j] = _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const int64_t left = K - k0;
      const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
      __m512 av[M];
      _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) av[m] = _mm512_maskz_loadu_ps(mask, A + m * am + k0);
      _Pragma("GCC unroll 4") for (int j = 0; j < kRows; ++j) {
        const __m512 wv = _mm512_maskz_loadu_ps(mask, w[j] + k0);
        _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) acc[m][j] = _mm512_fmadd_ps(av[m], wv, acc[m][j]);
      }
    }
    const int64_t columns = std::min<int64_t>(kRows, N - n0);
    _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) {
      const __m128 sums = _mm_hadd_ps(_mm_hadd_ps(fold(acc[m][0]), fold(acc[m][1])),
                                      _mm_hadd_ps(fold(acc[m][2]), fold(acc[m][3])));
      alignas(16) float out[kRows];
      _mm_store_ps(out, sums);
      for (int64_t j = 0; j < columns; ++j) O[m * N + n0 + j] = out[j];
    }
  }
}

// The same product for a contraction of at most 16: 16 columns at a time, their weights for one
// k gathered (stride wn), accumulated over k in order.
template <int M>
FRL_AVX512 void gather_block(const float* A, int64_t am, const float* W, int64_t wn, int64_t K, int64_t N,
                             float* O) {
  const __m512i offsets = _mm512_mullo_epi32(
      _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)wn));
  for (int64_t n0 = 0; n0 < N; n0 += 16) {
    const int64_t left = N - n0;
    const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
    __m512 acc[M];
    _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) acc[m] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; ++k) {
      const __m512 wv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, offsets, W + n0 * wn + k, 4);
      _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) acc[m] = _mm512_fmadd_ps(_mm512_set1_ps(A[m * am + k]), wv, acc[m]);
    }
    _Pragma("GCC unroll 4") for (int m = 0; m < M; ++m) _mm512_mask_storeu_ps(O + m * N + n0, mask, acc[m]);
  }
}

// O [M, N] = A [M, K] by W's columns, in blocks of 4 rows.
FRL_AVX512 void product(const float* A, int64_t am, const float* W, int64_t wn, int64_t K, int64_t N,
                        int64_t M, float* O) {
  const bool gather = K <= 16;
  for (int64_t m0 = 0; m0 < M; m0 += kRows) {
    const float* a = A + m0 * am;
    float* o = O + m0 * N;
    switch (std::min<int64_t>(kRows, M - m0)) {
      case 1: gather ? gather_block<1>(a, am, W, wn, K, N, o) : dot_block<1>(a, am, W, wn, K, N, o); break;
      case 2: gather ? gather_block<2>(a, am, W, wn, K, N, o) : dot_block<2>(a, am, W, wn, K, N, o); break;
      case 3: gather ? gather_block<3>(a, am, W, wn, K, N, o) : dot_block<3>(a, am, W, wn, K, N, o); break;
      default: gather ? gather_block<4>(a, am, W, wn, K, N, o) : dot_block<4>(a, am, W, wn, K, N, o); break;
    }
  }
}
#endif

bool vectorised() {
#ifdef FRL_SMALL_ROWS_X86
  static const bool avx512 = __builtin_cpu_supports("avx512f");
  return avx512;
#else
  return false;
#endif
}

// Whether this kernel takes (a, b) itself: float32 on the CPU, a by rows, b by columns, strides
// a gather's 32-bit offsets hold, and AVX-512 here.
bool takes(const torch::Tensor& a, const torch::Tensor& b) {
  return vectorised() && a.scalar_type() == torch::kFloat32 && b.scalar_type() == torch::kFloat32 &&
         a.device().is_cpu() && b.device().is_cpu() && (a.size(2) <= 1 || a.stride(2) == 1) &&
         (b.size(1) <= 1 || b.stride(1) == 1) && b.stride(2) < (int64_t(1) << 26);
}

torch::Tensor small_rows_bmm(const torch::Tensor& a, const torch::Tensor& b) {
  TORCH_CHECK(a.dim() == 3 && b.dim() == 3 && a.size(0) == b.size(0) && a.size(2) == b.size(1),
              "small_rows_bmm: [B, M, K] @ [B, K, N] expected, got ", a.sizes(), " and ", b.sizes());
  if (!takes(a, b)) return at::bmm(a, b);
  const int64_t B = a.size(0), M = a.size(1), K = a.size(2), N = b.size(2);
  auto out = torch::empty({B, M, N}, a.options());
  if (out.numel() == 0) return out;
  if (K == 0) return out.zero_();
#ifdef FRL_SMALL_ROWS_X86
  const float* pa = a.data_ptr<float>();
  const float* pb = b.data_ptr<float>();
  float* po = out.data_ptr<float>();
  for (int64_t i = 0; i < B; ++i)
    product(pa + i * a.stride(0), a.stride(1), pb + i * b.stride(0), b.stride(2), K, N, M, po + i * M * N);
#endif
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) {
  m.def("small_rows_bmm(Tensor a, Tensor b) -> Tensor");
  m.def("small_rows_vectorised() -> bool", &vectorised);  // whether the AVX-512 kernels run here
}
TORCH_LIBRARY_IMPL(frl_native, CPU, m) { m.impl("small_rows_bmm", &small_rows_bmm); }
