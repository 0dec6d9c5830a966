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
// The thread that switched the cache on (the training loop's) has free lists of its own, which
// only it touches: no lock, and an array indexed by size class for blocks up to kSmallBytes. A
// compiled loop body allocates ~50 buffers a step, and the mutex and hash lookup of a shared list
// were ~13% of one-seed PPO's collection (perf, AMD EPYC). Other threads share locked free lists.
// The two kinds of list count against one limit; with several threads freeing at once the total
// may pass it by a block per thread. The cache must be switched off by the thread that switched
// it on (frl.host_memory.caching does).
//
// Each block has a 64-byte header in front of the data (the data stays 64-byte aligned, as
// c10::alloc_cpu's) holding its size class, so freeing needs no lookup. The state lives on the
// heap and is never destroyed: tensors freed during interpreter shutdown, after static
// destructors ran, still find it. A child process after fork() gets a fresh mutex.
#include <torch/extension.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <pthread.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kHeader = 64;
constexpr size_t kSmallBytes = 256 * 1024;  // the owner's array of lists covers classes up to this
constexpr size_t kSmallBins = kSmallBytes / 64 + 1;

using Lists = std::unordered_map<size_t, std::vector<char*>>;  // size class -> cached blocks (headers)

// The owning thread's lists: read and written by that thread only. Counters other threads read
// (stats, the shared limit) are atomics it updates with plain loads and stores.
struct Owned {
  std::array<std::vector<char*>, kSmallBins> small;  // index: size class / 64
  Lists large;
  std::atomic<size_t> cached{0};
  std::atomic<int64_t> hits{0}, misses{0};
};

struct State {
  std::mutex mutex;  // guards `free` and the counters below it
  Lists free;
  std::atomic<size_t> cached{0};  // bytes in `free` (written under the mutex)
  int64_t hits = 0, misses = 0;
  size_t limit = 0;  // most bytes kept, both kinds of list together
  std::atomic<bool> enabled{false};
  std::atomic<pthread_t> owner{};
  c10::Allocator* previous = nullptr;
  Owned owned;
};

State& state() {
  static State* s = new State();  // never destroyed (see above)
  return *s;
}

size_t size_class(size_t n) { return (n + 63) & ~size_t(63); }

bool owner_here(const State& s) {
  return s.enabled.load(std::memory_order_relaxed) &&
         pthread_equal(pthread_self(), s.owner.load(std::memory_order_relaxed));
}

std::vector<char*>& owned_list(Owned& o, size_t cls) {
  return cls < kSmallBytes + 64 ? o.small[cls / 64] : o.large[cls];
}

void bump(std::atomic<int64_t>& counter) {  // owner-only: a plain load and store, no locked add
  counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void release(void* data) {
  char* base = static_cast<char*>(data) - kHeader;
  size_t cls = *reinterpret_cast<size_t*>(base);
  State& s = state();
  if (owner_here(s)) {
    Owned& o = s.owned;
    size_t mine = o.cached.load(std::memory_order_relaxed);
    if (mine + s.cached.load(std::memory_order_relaxed) + cls <= s.limit) {
      owned_list(o, cls).push_back(base);
      o.cached.store(mine + cls, std::memory_order_relaxed);
      return;
    }
  } else {
    std::lock_guard<std::mutex> lock(s.mutex);
    size_t shared = s.cached.load(std::memory_order_relaxed);
    if (s.enabled.load(std::memory_order_relaxed) &&
        shared + s.owned.cached.load(std::memory_order_relaxed) + cls <= s.limit) {
      s.free[cls].push_back(base);
      s.cached.store(shared + cls, std::memory_order_relaxed);
      return;
    }
  }
  c10::free_cpu(base);
}

char* take(State& s, size_t cls) {  // a cached block of class `cls`, or nullptr
  if (owner_here(s)) {
    Owned& o = s.owned;
    std::vector<char*>& list = owned_list(o, cls);
    if (list.empty()) {
      bump(o.misses);
      return nullptr;
    }
    char* base = list.back();
    list.pop_back();
    o.cached.store(o.cached.load(std::memory_order_relaxed) - cls, std::memory_order_relaxed);
    bump(o.hits);
    return base;
  }
  std::lock_guard<std::mutex> lock(s.mutex);
  auto it = s.free.find(cls);
  if (it == s.free.end() || it->second.empty()) {
    ++s.misses;
    return nullptr;
  }
  char* base = it->second.back();
  it->second.pop_back();
  s.cached.store(s.cached.load(std::memory_order_relaxed) - cls, std::memory_order_relaxed);
  ++s.hits;
  return base;
}

struct CachingAllocator final : c10::Allocator {
  c10::DataPtr allocate(size_t n) override {
    size_t cls = size_class(n);
    char* base = take(state(), cls);
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

void drain(Lists& lists, std::vector<char*>& into) {
  for (auto& entry : lists) into.insert(into.end(), entry.second.begin(), entry.second.end());
  lists.clear();
}

// Switches the cache on for the calling thread (a no-op when on); returns whether it was off.
bool host_cache_enable(int64_t limit_bytes) {
  TORCH_CHECK(limit_bytes > 0, "host_cache_enable: limit_bytes must be > 0, got ", limit_bytes);
  static bool registered = (pthread_atfork(nullptr, nullptr, &after_fork_in_child), true);
  (void)registered;
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.enabled.load()) return false;
  s.limit = static_cast<size_t>(limit_bytes);
  s.previous = c10::GetCPUAllocator();
  s.owner.store(pthread_self());
  c10::SetCPUAllocator(&allocator(), /*priority=*/0);
  s.enabled.store(true);
  return true;
}

// Switches the cache off (a no-op when off): the previous allocator back, cached blocks freed.
void host_cache_disable() {
  std::vector<char*> blocks;
  State& s = state();
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.enabled.load()) return;
    TORCH_CHECK(pthread_equal(pthread_self(), s.owner.load()),
                "host_cache_disable: the cache is switched off by the thread that switched it on");
    c10::SetCPUAllocator(s.previous, /*priority=*/0);
    s.enabled.store(false);
    drain(s.free, blocks);
    s.cached.store(0);
    Owned& o = s.owned;
    for (auto& list : o.small) {
      blocks.insert(blocks.end(), list.begin(), list.end());
      list.clear();
    }
    drain(o.large, blocks);
    o.cached.store(0);
  }
  for (char* base : blocks) c10::free_cpu(base);
}

// [enabled, cached bytes, limit, hits, misses]
std::vector<int64_t> host_cache_stats() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  const Owned& o = s.owned;
  return {s.enabled.load(), static_cast<int64_t>(s.cached.load() + o.cached.load()),
          static_cast<int64_t>(s.limit), s.hits + o.hits.load(), s.misses + o.misses.load()};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(frl_native, m) {
  m.def("host_cache_enable(int limit_bytes) -> bool", &host_cache_enable);
  m.def("host_cache_disable() -> ()", &host_cache_disable);
  m.def("host_cache_stats() -> int[]", &host_cache_stats);
}
