// A caching CPU allocator for torch, switched on around frl's training loops (frl/host_memory.py).
//
// A compiled step of a small network allocates and frees the same few dozen buffers every call
// (Inductor's C++ wrapper calls at::empty_strided for every intermediate); through glibc's malloc
// that was ~14% of one-seed PPO (_int_malloc, _int_free, malloc_consolidate). While switched on,
// this allocator keeps freed blocks in free lists keyed by their size rounded up to 64 bytes and
// hands them out again, up to a limit of cached bytes (beyond it, blocks go back to the system).
// Switching it off restores the previous allocator and frees every cached block; blocks still in
// use keep this allocator's deleter and go back to the system when their tensors die.
//
// Each block has a 64-byte header in front of the data (the data stays 64-byte aligned, as
// c10::alloc_cpu's) holding its size class, so freeing needs no lookup. The state lives on the
// heap and is never destroyed: tensors freed during interpreter shutdown, after static
// destructors ran, still find it. A child process after fork() gets a fresh mutex.
#include <torch/extension.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <pthread.h>

#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kHeader = 64;

struct State {
  std::mutex mutex;
  std::unordered_map<size_t, std::vector<char*>> free;  // size class -> cached blocks (headers)
  size_t cached = 0;                                    // bytes in the free lists
  size_t limit = 0;                                     // most bytes kept
  bool enabled = false;
  c10::Allocator* previous = nullptr;
  int64_t hits = 0, misses = 0;
};

State& state() {
  static State* s = new State();  // never destroyed (see above)
  return *s;
}

size_t size_class(size_t n) { return (n + 63) & ~size_t(63); }

void release(void* data) {
  char* base = static_cast<char*>(data) - kHeader;
  size_t cls = *reinterpret_cast<size_t*>(base);
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (s.enabled && s.cached + cls <= s.limit) {
      s.free[cls].push_back(base);
      s.cached += cls;
      return;
    }
  }
  c10::free_cpu(base);
}

struct CachingAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    size_t cls = size_class(n);
    char* base = nullptr;
    State& s = state();
    {
      std::lock_guard<std::mutex> lock(s.mutex);
      auto it = s.free.find(cls);
      if (it != s.free.end() && !it->second.empty()) {
        base = it->second.back();
        it->second.pop_back();
        s.cached -= cls;
        ++s.hits;
      } else {
        ++s.misses;
      }
    }
    if (base == nullptr) {
      base = static_cast<char*>(c10::alloc_cpu(cls + kHeader));
      *reinterpret_cast<size_t*>(base) = cls;
    }
    void* data = base + kHeader;
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
};

CachingAllocator& allocator() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

void after_fork_in_child() { new (&state().mutex) std::mutex(); }

// Switches the cache on (a no-op when on); returns whether it was off.
bool host_cache_enable(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes > 0, "host_cache_enable: limit_bytes must be > 0, got ", limit_bytes);
  static bool registered = (pthread_atfork(nullptr, nullptr, &after_fork_in_child), true);
  (void)registered;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled) return false;
  s.limit = static_cast<size_t>(limit_bytes);
  s.previous = c10::GetCPUAllocator();
  c10::SetCPUAllocator(&allocator(), /*priority=*/0);
  s.enabled = true;
  return true;
}

// Switches the cache off (a no-op when off): the previous allocator back, cached blocks freed.
void host_cache_disable() {
  std::vector<char*> blocks;
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.enabled) return;
    c10::SetCPUAllocator(s.previous, /*priority=*/0);
    s.enabled = false;
    for (auto& entry : s.free) blocks.insert(blocks.end(), entry.second.begin(), entry.second.end());
    s.free.clear();
    s.cached = 0;
  }
  for (char* base : blocks) c10::free_cpu(base);
}

// [enabled, cached bytes, limit, hits, misses]
std::vector<int64_t> host_cache_stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return {s.enabled, static_cast<int64_t>(s.cached), static_cast<int64_t>(s.limit), s.hits, s.misses};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) {
  m.def("host_cache_enable(int limit_bytes) -> bool", &host_cache_enable);
  m.def("host_cache_disable() -> ()", &host_cache_disable);
  m.def("host_cache_stats() -> int[]", &host_cache_stats);
}
