// A sorted sequence stored as a two-level B+tree: fixed-capacity leaves of entries in key order
// plus a flat index of each leaf's first key and of (leaf pointer, entry count). Chosen over
// std::map for memory (no per-entry node: 24 bytes of index per leaf of 32 entries) and for
// cache-friendly lookups; inserts and erases move at most one leaf. Appending at the end fills
// leaves completely, which is the common case for a vdisk written front to back.
//
// Point lookups (last_le) touch the leaf itself only once: the leaf is chosen by a branchless
// search of the first keys (a few KiB per 100 000 entries: L1/L2-resident), the entry count comes
// from the index, and the position inside the leaf is guessed by interpolation before the leaf
// is read, so the cache lines around the guess are fetched in parallel.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace v2p::correlator {

template <class E, class Key, class KeyOf, std::size_t kCap = 32>
class SortedChunks {
 public:
  struct Pos {
    std::size_t leaf = 0;
    std::size_t idx = 0;
  };

  SortedChunks() = default;
  SortedChunks(const SortedChunks& o) : firsts_(o.firsts_), fences_(o.fences_), size_(o.size_) {
    nodes_.reserve(o.nodes_.size());
    for (const auto& nd : o.nodes_) {
      Leaf* l = alloc_leaf();
      *l = *nd.leaf;
      nodes_.push_back({l, nd.n});
    }
  }
  SortedChunks& operator=(const SortedChunks& o) {
    if (this != &o) *this = SortedChunks(o);
    return *this;
  }
  SortedChunks(SortedChunks&&) noexcept = default;
  SortedChunks& operator=(SortedChunks&&) noexcept = default;

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] Pos begin() const noexcept { return {0, 0}; }
  [[nodiscard]] bool at_end(Pos p) const noexcept { return p.leaf >= nodes_.size(); }
  E& get(Pos p) noexcept { return nodes_[p.leaf].leaf->e[p.idx]; }
  const E& get(Pos p) const noexcept { return nodes_[p.leaf].leaf->e[p.idx]; }

  Pos next(Pos p) const noexcept {
    if (++p.idx == nodes_[p.leaf].n) return {p.leaf + 1, 0};
    return p;
  }
  // The previous position, or nullopt at the first entry.
  std::optional<Pos> prev(Pos p) const noexcept {
    if (p.idx > 0) return Pos{p.leaf, p.idx - 1};
    if (p.leaf == 0) return std::nullopt;
    return Pos{p.leaf - 1, nodes_[p.leaf - 1].n - 1};
  }

  // First entry with key >= k (at_end when none).
  Pos lower_bound(const Key& k) const noexcept {
    if (nodes_.empty()) return end();
    const std::size_t li = leaf_for(k);
    const Node& nd = nodes_[li];
    const E* e = nd.leaf->e;
    const auto it =
        std::lower_bound(e, e + nd.n, k, [](const E& a, const Key& b) { return KeyOf{}(a) < b; });
    const auto idx = static_cast<std::size_t>(it - e);
    if (idx == nd.n) return {li + 1, 0};
    return {li, idx};
  }

  // Last entry with key <= k.
  std::optional<Pos> last_le(const Key& k) const noexcept {
    if (firsts_.empty() || k < firsts_.front()) return std::nullopt;
    const std::size_t li = leaf_for(k);
    return Pos{li, leaf_upper_bound(li, k) - 1};
  }

  // Batched point lookups, in two steps so that the memory round trips of several keys overlap:
  // locate(k) finds k's leaf from the index and prefetches the cache lines of that leaf where
  // last_le will look (the interpolation window, or the whole leaf), without waiting for them;
  // last_le_located(leaf, k) later finishes the lookup exactly like last_le(k). A caller issues
  // locate a few keys ahead of the one it finishes.
  static constexpr std::size_t kNoLeaf = ~std::size_t{0};
  std::size_t locate(const Key& k) const noexcept {
    if (firsts_.empty() || k < firsts_.front()) return kNoLeaf;
    const std::size_t li = leaf_for(k);
    const Node& nd = nodes_[li];
    const auto [a, len] = probe_window(li, k);
    const char* p = reinterpret_cast<const char*>(nd.leaf->e + a);
    const char* end = reinterpret_cast<const char*>(nd.leaf->e + a + len);
    for (p = reinterpret_cast<const char*>(reinterpret_cast<std::uintptr_t>(p) &
                                           ~std::uintptr_t{63});
         p < end; p += 64) {
      __builtin_prefetch(p, 0, 3);
    }
    return li;
  }
  std::optional<Pos> last_le_located(std::size_t leaf, const Key& k) const noexcept {
    if (leaf == kNoLeaf) return std::nullopt;
    return Pos{leaf, leaf_upper_bound(leaf, k) - 1};
  }

  void insert(const E& v) {
    const Key k = KeyOf{}(v);
    if (nodes_.empty()) {
      insert_at(0, 0, v);
      return;
    }
    const std::size_t li = leaf_for(k);
    const Node& nd = nodes_[li];
    const E* e = nd.leaf->e;
    const auto idx = static_cast<std::size_t>(
        std::upper_bound(e, e + nd.n, k, [](const Key& a, const E& b) { return a < KeyOf{}(b); }) -
        e);
    insert_at(li, idx, v);
  }

  // Inserts v right after position `after` (at the front when nullopt) without searching; the
  // caller guarantees that is v's place in key order.
  void insert_after(std::optional<Pos> after, const E& v) {
    if (!after) {
      insert_at(0, 0, v);
    } else {
      insert_at(after->leaf, after->idx + 1, v);
    }
  }

  // Changes the key of the entry at p to k; the caller guarantees the order is unchanged (k lies
  // between the keys of p's neighbours). The entry's own key field is the caller's to update.
  template <class SetKey>
  void rekey(Pos p, const Key& k, SetKey&& set) {
    set(get(p), k);
    if (p.idx == 0) set_first(p.leaf, k);
  }

  // Erases the entry at p; positions after it are invalidated.
  void erase(Pos p) {
    Node& nd = nodes_[p.leaf];
    E* e = nd.leaf->e;
    std::move(e + p.idx + 1, e + nd.n, e + p.idx);
    --nd.n;
    --size_;
    if (nd.n == 0) {
      free_leaf(nd.leaf);
      nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(p.leaf));
      firsts_.erase(firsts_.begin() + static_cast<std::ptrdiff_t>(p.leaf));
      refence_from(p.leaf);
      return;
    }
    if (p.idx == 0) set_first(p.leaf, KeyOf{}(e[0]));
    maybe_merge(p.leaf);
  }

  // Erases the entry whose key is exactly k; false when there is none.
  bool erase_key(const Key& k) {
    const Pos p = lower_bound(k);
    if (at_end(p) || !(KeyOf{}(get(p)) == k)) return false;
    erase(p);
    return true;
  }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& nd : nodes_) {
      for (std::size_t i = 0; i < nd.n; ++i) f(nd.leaf->e[i]);
    }
  }

  // Builds the tree from entries already in strictly increasing key order, replacing its
  // contents: one pass filling each leaf completely (what appending one by one produces too), no
  // search and no index rewrite per entry. Used to restore a snapshot, which is stored sorted.
  void assign_sorted(const E* first, std::size_t n) {
    clear();
    const std::size_t leaves = (n + kCap - 1) / kCap;
    nodes_.reserve(leaves);
    firsts_.reserve(leaves);
    for (std::size_t i = 0; i < n; i += kCap) {
      const std::size_t take = std::min(kCap, n - i);
      Leaf* l = alloc_leaf();
      std::copy(first + i, first + i + take, l->e);
      nodes_.push_back({l, take});
      firsts_.push_back(KeyOf{}(first[i]));
    }
    refence_from(0);
    size_ = n;
  }

  void clear() noexcept {
    nodes_.clear();
    firsts_.clear();
    fences_.clear();
    slabs_.clear();
    free_.clear();
    slab_used_ = slab_cap_ = slab_leaves_ = 0;
    size_ = 0;
  }

  // Heap bytes: leaf slabs (with an allocator header each, free leaves included) and the index.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    constexpr std::size_t kMallocHeader = 16;
    std::size_t slabs = 0;
    for (std::size_t i = 0; i < slabs_.size(); ++i) {
      const Slab& sl = slabs_[i];
      if (!sl.mapped()) {
        slabs += sl.leaves() * sizeof(Leaf) + kMallocHeader;
      } else {
        // Pages of a mapping become resident only when a leaf in them is first handed out.
        const std::size_t used = i + 1 == slabs_.size() ? slab_used_ : sl.leaves();
        slabs += (used * sizeof(Leaf) + kPage - 1) / kPage * kPage;
      }
    }
    return slabs + slabs_.capacity() * sizeof(Slab) + nodes_.capacity() * sizeof(Node) +
           (firsts_.capacity() + fences_.capacity()) * sizeof(Key) +
           free_.capacity() * sizeof(Leaf*);
  }

 private:
  // Cache-line aligned, so no entry of a power-of-two size straddles two lines.
  struct alignas(64) Leaf {
    E e[kCap];
  };
  // The entry count lives in the index next to the pointer, so a lookup knows where to look in
  // the leaf before reading it.
  struct Node {
    Leaf* leaf = nullptr;
    std::size_t n = 0;
  };
  static_assert(std::is_trivially_destructible_v<Leaf>);

  // Leaves come from slabs owned by the tree, not one heap block each: no allocator header per
  // leaf, and a tree's leaves stay dense in memory instead of interleaved with everything else
  // the process allocates. Slabs grow from 4 to 64 leaves on the heap, so a small tree stays
  // small. Past kHeapLeaves leaves a tree takes 2 MiB anonymous mappings instead, handed out in
  // order (pages become resident as they are used) and collapsed into one transparent huge page
  // once full: random lookups over a large map then miss the TLB far less. Freed leaves are
  // reused. Leaves are constructed when handed out.
  static constexpr std::size_t kFirstSlab = 4, kMaxSlab = 64, kHeapLeaves = 128;
  static constexpr std::size_t kPage = 4096, kHugePage = std::size_t{2} << 20;

  class Slab {
   public:
    Slab(std::size_t leaves, bool mapped) : leaves_(leaves) {
      if (mapped) mem_ = map_huge_aligned();
      if (mem_ == nullptr) {
        mem_ = static_cast<Leaf*>(
            ::operator new (leaves * sizeof(Leaf), std::align_val_t{alignof(Leaf)}));
        mapped_ = false;
      } else {
        mapped_ = true;
      }
    }
    Slab(Slab&& o) noexcept
        : mem_(std::exchange(o.mem_, nullptr)), leaves_(o.leaves_), mapped_(o.mapped_) {}
    Slab& operator=(Slab&&) = delete;
    Slab(const Slab&) = delete;
    ~Slab() {
      if (mem_ == nullptr) return;
      if (mapped_) {
        ::munmap(mem_, kHugePage);
      } else {
        ::operator delete (mem_, std::align_val_t{alignof(Leaf)});
      }
    }
    [[nodiscard]] Leaf* at(std::size_t i) const noexcept { return mem_ + i; }
    [[nodiscard]] std::size_t leaves() const noexcept { return leaves_; }
    [[nodiscard]] bool mapped() const noexcept { return mapped_; }
    // Best effort: without THP (or on kernels before 6.1) the slab keeps its 4 KiB pages, or
    // khugepaged collapses it later.
    void collapse() const noexcept {
      // MADV_COLLAPSE (Linux 6.1); Debian 12's glibc 2.36 headers do not define it yet.
      constexpr int kMadvCollapse = 25;
      if (!mapped_) return;
      if (::madvise(mem_, kHugePage, kMadvCollapse) != 0) ::madvise(mem_, kHugePage, MADV_HUGEPAGE);
    }

   private:
    // A 2 MiB-aligned 2 MiB anonymous mapping, or nullptr.
    static Leaf* map_huge_aligned() noexcept {
      void* p = ::mmap(nullptr, 2 * kHugePage, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      auto* b = static_cast<char*>(p);
      const auto addr = reinterpret_cast<std::uintptr_t>(b);
      char* aligned = b + ((kHugePage - addr % kHugePage) % kHugePage);
      if (aligned > b) ::munmap(b, static_cast<std::size_t>(aligned - b));
      char* end = b + 2 * kHugePage;
      if (aligned + kHugePage < end) {
        ::munmap(aligned + kHugePage, static_cast<std::size_t>(end - (aligned + kHugePage)));
      }
      return reinterpret_cast<Leaf*>(aligned);
    }

    Leaf* mem_ = nullptr;
    std::size_t leaves_ = 0;
    bool mapped_ = false;
  };

  Leaf* alloc_leaf() {
    if (!free_.empty()) {
      Leaf* l = free_.back();
      free_.pop_back();
      return new (l) Leaf{};
    }
    if (slabs_.empty() || slab_used_ == slab_cap_) {  // (empty: also after being moved from)
      const bool mapped = slab_leaves_ >= kHeapLeaves;
      slab_cap_ = mapped           ? kHugePage / sizeof(Leaf)
                  : slabs_.empty() ? kFirstSlab
                                   : std::min(kMaxSlab, 2 * slab_cap_);
      slabs_.emplace_back(slab_cap_, mapped);
      slab_used_ = 0;
      slab_leaves_ += slab_cap_;
    }
    Leaf* l = new (slabs_.back().at(slab_used_++)) Leaf{};
    if (slab_used_ == slab_cap_) slabs_.back().collapse();  // every page of it is in use now
    return l;
  }
  void free_leaf(Leaf* l) { free_.push_back(l); }

  Pos end() const noexcept { return {nodes_.size(), 0}; }

  void insert_at(std::size_t li, std::size_t idx, const E& v) {
    const Key k = KeyOf{}(v);
    if (nodes_.empty()) {
      nodes_.push_back({alloc_leaf(), 0});
      firsts_.push_back(k);
      refence_from(0);
    }
    if (nodes_[li].n == kCap) {
      if (li + 1 == nodes_.size() && idx == kCap) {
        // Appending: start a new leaf and leave this one full.
        nodes_.push_back({alloc_leaf(), 0});
        firsts_.push_back(k);
        refence_from(firsts_.size() - 1);
        ++li;
        idx = 0;
      } else if (li + 1 < nodes_.size() && nodes_[li + 1].n < kCap) {
        // B*-tree style: spill one entry into a neighbour with room before splitting, which
        // keeps leaves about 85% full under random inserts instead of about 70%.
        if (idx == kCap) {
          ++li;
          idx = 0;
        } else {
          Node& l = nodes_[li];
          Node& right = nodes_[li + 1];
          E* r = right.leaf->e;
          std::move_backward(r, r + right.n, r + right.n + 1);
          r[0] = l.leaf->e[kCap - 1];
          ++right.n;
          --l.n;
          set_first(li + 1, KeyOf{}(r[0]));
        }
      } else if (li > 0 && nodes_[li - 1].n < kCap) {
        Node& left = nodes_[li - 1];
        if (idx == 0) {
          --li;
          idx = left.n;
        } else {
          Node& l = nodes_[li];
          E* e = l.leaf->e;
          left.leaf->e[left.n++] = e[0];
          std::move(e + 1, e + l.n, e);
          --l.n;
          --idx;
          set_first(li, KeyOf{}(e[0]));
        }
      } else {
        split(li);
        if (idx > nodes_[li].n) {
          idx -= nodes_[li].n;
          ++li;
        }
      }
    }
    Node& nd = nodes_[li];
    E* e = nd.leaf->e;
    std::move_backward(e + idx, e + nd.n, e + nd.n + 1);
    e[idx] = v;
    ++nd.n;
    if (idx == 0) set_first(li, k);
    ++size_;
  }

  // First index in leaf li with key > k. For integer keys (voffsets, roughly uniform inside a
  // leaf) the position is first guessed by interpolating between this leaf's first key and the
  // next leaf's, which the index already holds, without reading the leaf. The keys of a window
  // around the guess are then counted without branches: their cache lines are fetched in
  // parallel (one memory round trip), and the outcome is the same whichever way the guess was
  // off. Only when the answer lies outside the window (a few percent of random probes) is the
  // whole leaf counted. Other keys (the reverse index) use a binary search.
  static constexpr std::size_t kWindow = 10;
  // The entries of leaf li that leaf_upper_bound reads first for key k: [first, first + count).
  // Computed from the index alone (no access to the leaf).
  std::pair<std::size_t, std::size_t> probe_window(std::size_t li, const Key& k) const noexcept {
    const std::size_t n = nodes_[li].n;
    if constexpr (std::is_integral_v<Key>) {
      if (li + 1 < firsts_.size() && n >= kWindow && firsts_[li + 1] > firsts_[li]) {
        const Key lo = firsts_[li], hi = firsts_[li + 1];
        const auto g = static_cast<std::size_t>(
            static_cast<double>(k - lo) / static_cast<double>(hi - lo) * static_cast<double>(n));
        // The answer is one past the last key <= k; interpolation puts that key within ±4 of g
        // for 97% of uniformly random probes.
        return {std::min(g > 4 ? g - 4 : 0, n - kWindow), kWindow};
      }
    }
    return {0, n};
  }

  std::size_t leaf_upper_bound(std::size_t li, const Key& k) const noexcept {
    const Node& nd = nodes_[li];
    const E* e = nd.leaf->e;
    const std::size_t n = nd.n;
    if constexpr (std::is_integral_v<Key>) {
      if (li + 1 < firsts_.size() && n >= kWindow && firsts_[li + 1] > firsts_[li]) {
        const std::size_t a = probe_window(li, k).first;
        std::size_t c = 0;
        for (std::size_t i = 0; i < kWindow; ++i) c += KeyOf{}(e[a + i]) <= k ? 1 : 0;
        if ((c > 0 || a == 0) && (c < kWindow || a + kWindow == n)) return a + c;
      }
      // Far off (or no next leaf to interpolate to): count the whole leaf, still one round trip
      // with every line in flight, where a binary search would wait for one line per probe.
      std::size_t c = 0;
      for (std::size_t i = 0; i < n; ++i) c += KeyOf{}(e[i]) <= k ? 1 : 0;
      return c;
    }
    const auto it =
        std::upper_bound(e, e + n, k, [](const Key& x, const E& y) { return x < KeyOf{}(y); });
    return static_cast<std::size_t>(it - e);
  }

  // Index of the leaf that holds (or would hold) key k: the last leaf whose first key is <= k,
  // or 0. Two levels, both branchless (conditional moves and counting), so the outcome of one
  // probe never stalls the next and independent lookups overlap their cache misses: a binary
  // search of the fences (every 16th first key: L1-resident), then a count over the 16 first
  // keys below the chosen fence (two cache lines, loaded in parallel).
  std::size_t leaf_for(const Key& k) const noexcept {
    const Key* base = fences_.data();
    std::size_t n = fences_.size();
    if (n == 0) return 0;
    while (n > 1) {
      const std::size_t half = n / 2;
      base = (base[half] <= k) ? base + half : base;
      n -= half;
    }
    const std::size_t from = static_cast<std::size_t>(base - fences_.data()) * kFenceStride;
    const std::size_t to = std::min(from + kFenceStride, firsts_.size());
    std::size_t below = 0;  // first keys <= k after firsts_[from]
    for (std::size_t i = from + 1; i < to; ++i) below += firsts_[i] <= k ? 1 : 0;
    return from + below;
  }

  // Keeps fences_ equal to every kFenceStride-th first key.
  void set_first(std::size_t li, const Key& k) noexcept {
    firsts_[li] = k;
    if (li % kFenceStride == 0) fences_[li / kFenceStride] = k;
  }
  // After leaves were inserted or erased at li: the fences from there on moved.
  void refence_from(std::size_t li) {
    fences_.resize((firsts_.size() + kFenceStride - 1) / kFenceStride);
    for (std::size_t j = li / kFenceStride; j < fences_.size(); ++j) {
      fences_[j] = firsts_[j * kFenceStride];
    }
  }
  static constexpr std::size_t kFenceStride = 16;

  void split(std::size_t li) {
    Leaf* right = alloc_leaf();
    Node& l = nodes_[li];
    const std::size_t keep = l.n / 2;
    std::copy(l.leaf->e + keep, l.leaf->e + l.n, right->e);
    const std::size_t moved = l.n - keep;
    l.n = keep;
    const Key first = KeyOf{}(right->e[0]);
    firsts_.insert(firsts_.begin() + static_cast<std::ptrdiff_t>(li + 1), first);
    refence_from(li + 1);
    nodes_.insert(nodes_.begin() + static_cast<std::ptrdiff_t>(li + 1), Node{right, moved});
  }

  // Keeps leaves at least a quarter full by folding a sparse leaf into a neighbour.
  void maybe_merge(std::size_t li) {
    if (nodes_[li].n >= kCap / 4) return;
    std::size_t left = li;
    if (li + 1 < nodes_.size() && nodes_[li].n + nodes_[li + 1].n <= kCap * 3 / 4) {
      left = li;
    } else if (li > 0 && nodes_[li - 1].n + nodes_[li].n <= kCap * 3 / 4) {
      left = li - 1;
    } else {
      return;
    }
    Node& a = nodes_[left];
    const Node& b = nodes_[left + 1];
    std::copy(b.leaf->e, b.leaf->e + b.n, a.leaf->e + a.n);
    a.n += b.n;
    free_leaf(b.leaf);
    nodes_.erase(nodes_.begin() + static_cast<std::ptrdiff_t>(left + 1));
    firsts_.erase(firsts_.begin() + static_cast<std::ptrdiff_t>(left + 1));
    refence_from(left + 1);
  }

  std::vector<Node> nodes_;
  std::vector<Key> firsts_;
  std::vector<Key> fences_;  // firsts_[kFenceStride * j]: the upper level of the leaf index
  std::vector<Slab> slabs_;
  std::vector<Leaf*> free_;
  std::size_t slab_used_ = 0, slab_cap_ = 0, slab_leaves_ = 0;
  std::size_t size_ = 0;
};

}  // namespace v2p::correlator
