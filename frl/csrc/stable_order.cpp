// frl_native::stable_order(words [..., n]) -> int64 [..., n]: the indices that sort 32-bit words
// (int64 values in [0, 2^32)) along the last dim, equal words in index order: what
// torch.argsort(words, dim=-1, stable=True) returns (see frl.random.stable_order).
//
// Why: PPO draws a fresh order of its segment for every epoch by sorting random words; torch's
// CPU sort is a merge sort of (value, index) tuples, ~16 us for a row of 512 (2.1 ms for the 128
// rows of 32 seeds x 4 epochs, measured on one AMD EPYC core). A least-significant-digit radix
// sort (four passes of 8 bits, one counting pass for all four) is stable by construction and
// needs no comparisons.
#include <torch/extension.h>

#include <array>
#include <cstdint>
#include <vector>

namespace {

constexpr int kDigits = 4;
constexpr int kBuckets = 256;

// Sorts one row: keys and indices in (k0, i0), scratch in (k1, i1); returns the buffer holding
// the sorted indices (i0 or i1).
uint32_t* radix_row(uint32_t* k0, uint32_t* i0, uint32_t* k1, uint32_t* i1, int64_t n,
                    std::array<std::array<uint32_t, kBuckets>, kDigits>& counts) {
  for (int d = 0; d < kDigits; ++d) {
    auto& count = counts[d];
    const int shift = 8 * d;
    if (count[(k0[0] >> shift) & 0xFF] == (uint32_t)n) continue;  // every key has this digit
    uint32_t sum = 0;
    for (int b = 0; b < kBuckets; ++b) {
      const uint32_t c = count[b];
      count[b] = sum;
      sum += c;
    }
    for (int64_t j = 0; j < n; ++j) {
      const uint32_t at = count[(k0[j] >> shift) & 0xFF]++;
      k1[at] = k0[j];
      i1[at] = i0[j];
    }
    std::swap(k0, k1);
    std::swap(i0, i1);
  }
  return i0;
}

torch::Tensor stable_order(const torch::Tensor& words) {
  TORCH_CHECK(words.scalar_type() == torch::kInt64, "stable_order: int64 words expected, got ",
              words.scalar_type());
  TORCH_CHECK(words.dim() >= 1, "stable_order: words need at least one dim, got a 0-d tensor");
  const int64_t n = words.size(-1);
  TORCH_CHECK(n <= (int64_t)UINT32_MAX, "stable_order: at most 2^32 - 1 words per row, got ", n);
  auto w = words.contiguous();
  auto out = torch::empty(w.sizes(), w.options());
  if (w.numel() == 0) return out;
  const int64_t rows = w.numel() / n;
  const int64_t* src = w.data_ptr<int64_t>();
  int64_t* dst = out.data_ptr<int64_t>();
  std::vector<uint32_t> buffer(4 * n);
  uint32_t *k0 = buffer.data(), *i0 = k0 + n, *k1 = i0 + n, *i1 = k1 + n;
  std::array<std::array<uint32_t, kBuckets>, kDigits> counts;
  for (int64_t r = 0; r < rows; ++r, src += n, dst += n) {
    for (auto& count : counts) count.fill(0);
    for (int64_t j = 0; j < n; ++j) {
      const int64_t v = src[j];
      TORCH_CHECK(v >= 0 && v <= (int64_t)UINT32_MAX, "stable_order: words must lie in [0, 2^32), got ", v,
                  " at index ", j, " of row ", r);
      const uint32_t key = (uint32_t)v;
      k0[j] = key;
      i0[j] = (uint32_t)j;
      for (int d = 0; d < kDigits; ++d) ++counts[d][(key >> (8 * d)) & 0xFF];
    }
    const uint32_t* order = radix_row(k0, i0, k1, i1, n, counts);
    for (int64_t j = 0; j < n; ++j) dst[j] = order[j];
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) { m.def("stable_order(Tensor words) -> Tensor"); }
TORCH_LIBRARY_IMPL(frl_native, CPU, m) { m.impl("stable_order", &stable_order); }
