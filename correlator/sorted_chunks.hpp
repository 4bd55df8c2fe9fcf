// A sorted sequence stored as a two-level B+tree: fixed-capacity leaves of entries in key order
// plus a flat index of each leaf's first key. Chosen over std::map for memory (no per-entry node:
// about 8 bytes of index per leaf of 32 entries) and for cache-friendly lookups; inserts and
// erases move at most one leaf. Appending at the end fills leaves completely, which is the common
// case for a vdisk written front to back.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <type_traits>
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
  SortedChunks(const SortedChunks& o) : firsts_(o.firsts_), size_(o.size_) {
    leaves_.reserve(o.leaves_.size());
    for (const auto& l : o.leaves_) leaves_.push_back(std::make_unique<Leaf>(*l));
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
  [[nodiscard]] bool at_end(Pos p) const noexcept { return p.leaf >= leaves_.size(); }
  E& get(Pos p) noexcept { return leaves_[p.leaf]->e[p.idx]; }
  const E& get(Pos p) const noexcept { return leaves_[p.leaf]->e[p.idx]; }

  Pos next(Pos p) const noexcept {
    if (++p.idx == leaves_[p.leaf]->n) return {p.leaf + 1, 0};
    return p;
  }
  // The previous position, or nullopt at the first entry.
  std::optional<Pos> prev(Pos p) const noexcept {
    if (p.idx > 0) return Pos{p.leaf, p.idx - 1};
    if (p.leaf == 0) return std::nullopt;
    return Pos{p.leaf - 1, leaves_[p.leaf - 1]->n - 1};
  }

  // First entry with key >= k (at_end when none).
  Pos lower_bound(const Key& k) const noexcept {
    if (leaves_.empty()) return end();
    const std::size_t li = leaf_for(k);
    const Leaf& l = *leaves_[li];
    const auto it = std::lower_bound(l.e, l.e + l.n, k,
                                     [](const E& a, const Key& b) { return KeyOf{}(a) < b; });
    const auto idx = static_cast<std::size_t>(it - l.e);
    if (idx == l.n) return {li + 1, 0};
    return {li, idx};
  }

  // Last entry with key <= k.
  std::optional<Pos> last_le(const Key& k) const noexcept {
    const auto fi = std::upper_bound(firsts_.begin(), firsts_.end(), k);
    if (fi == firsts_.begin()) return std::nullopt;
    const auto li = static_cast<std::size_t>(fi - firsts_.begin()) - 1;
    return Pos{li, leaf_upper_bound(li, k) - 1};
  }

  void insert(const E& v) {
    const Key k = KeyOf{}(v);
    if (leaves_.empty()) {
      insert_at(0, 0, v);
      return;
    }
    const std::size_t li = leaf_for(k);
    const Leaf& l = *leaves_[li];
    const auto idx = static_cast<std::size_t>(
        std::upper_bound(l.e, l.e + l.n, k,
                         [](const Key& a, const E& b) { return a < KeyOf{}(b); }) -
        l.e);
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
    if (p.idx == 0) firsts_[p.leaf] = k;
  }

  // Erases the entry at p; positions after it are invalidated.
  void erase(Pos p) {
    Leaf& l = *leaves_[p.leaf];
    std::move(l.e + p.idx + 1, l.e + l.n, l.e + p.idx);
    --l.n;
    --size_;
    if (l.n == 0) {
      leaves_.erase(leaves_.begin() + static_cast<std::ptrdiff_t>(p.leaf));
      firsts_.erase(firsts_.begin() + static_cast<std::ptrdiff_t>(p.leaf));
      return;
    }
    if (p.idx == 0) firsts_[p.leaf] = KeyOf{}(l.e[0]);
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
    for (const auto& l : leaves_) {
      for (std::size_t i = 0; i < l->n; ++i) f(l->e[i]);
    }
  }

  void clear() noexcept {
    leaves_.clear();
    firsts_.clear();
    size_ = 0;
  }

  // Heap bytes: leaves (with an allocator header each) and the leaf index.
  [[nodiscard]] std::size_t memory_bytes() const noexcept {
    constexpr std::size_t kMallocHeader = 16;
    return leaves_.size() * (sizeof(Leaf) + kMallocHeader) +
           leaves_.capacity() * sizeof(std::unique_ptr<Leaf>) + firsts_.capacity() * sizeof(Key);
  }

 private:
  struct Leaf {
    std::size_t n = 0;
    E e[kCap];
  };

  Pos end() const noexcept { return {leaves_.size(), 0}; }

  void insert_at(std::size_t li, std::size_t idx, const E& v) {
    const Key k = KeyOf{}(v);
    if (leaves_.empty()) {
      leaves_.push_back(std::make_unique<Leaf>());
      firsts_.push_back(k);
    }
    Leaf* l = leaves_[li].get();
    if (l->n == kCap) {
      if (li + 1 == leaves_.size() && idx == kCap) {
        // Appending: start a new leaf and leave this one full.
        leaves_.push_back(std::make_unique<Leaf>());
        firsts_.push_back(k);
        ++li;
        l = leaves_[li].get();
        idx = 0;
      } else if (li + 1 < leaves_.size() && leaves_[li + 1]->n < kCap) {
        // B*-tree style: spill one entry into a neighbour with room before splitting, which
        // keeps leaves about 85% full under random inserts instead of about 70%.
        Leaf& right = *leaves_[li + 1];
        if (idx == kCap) {
          l = &right;
          ++li;
          idx = 0;
        } else {
          std::move_backward(right.e, right.e + right.n, right.e + right.n + 1);
          right.e[0] = l->e[kCap - 1];
          ++right.n;
          --l->n;
          firsts_[li + 1] = KeyOf{}(right.e[0]);
        }
      } else if (li > 0 && leaves_[li - 1]->n < kCap) {
        Leaf& left = *leaves_[li - 1];
        if (idx == 0) {
          l = &left;
          --li;
          idx = left.n;
        } else {
          left.e[left.n++] = l->e[0];
          std::move(l->e + 1, l->e + l->n, l->e);
          --l->n;
          --idx;
          firsts_[li] = KeyOf{}(l->e[0]);
        }
      } else {
        split(li);
        if (idx > l->n) {
          idx -= l->n;
          ++li;
          l = leaves_[li].get();
        }
      }
    }
    std::move_backward(l->e + idx, l->e + l->n, l->e + l->n + 1);
    l->e[idx] = v;
    ++l->n;
    if (idx == 0) firsts_[li] = k;
    ++size_;
  }

  // First index in leaf li with key > k. For integer keys (voffsets, roughly uniform inside a
  // leaf) the position is first guessed by interpolating between this leaf's first key and the
  // next leaf's, which the index already holds: a point lookup then touches one or two cache
  // lines of the leaf instead of one per binary-search probe.
  std::size_t leaf_upper_bound(std::size_t li, const Key& k) const noexcept {
    const Leaf& l = *leaves_[li];
    auto key_at = [&](std::size_t i) { return KeyOf{}(l.e[i]); };
    if constexpr (std::is_integral_v<Key>) {
      if (li + 1 < firsts_.size() && l.n > 2) {
        const Key lo = firsts_[li], hi = firsts_[li + 1];
        auto g = static_cast<std::size_t>(static_cast<double>(k - lo) /
                                          static_cast<double>(hi - lo) * static_cast<double>(l.n));
        g = std::min(g, l.n - 1);
        // Walk a few steps from the guess; fall back to binary search when it was far off.
        for (int step = 0; step < 4; ++step) {
          if (key_at(g) <= k) {
            if (g + 1 == l.n || key_at(g + 1) > k) return g + 1;
            ++g;
          } else {
            if (g == 0) return 0;
            if (key_at(g - 1) <= k) return g;
            --g;
          }
        }
      }
    }
    const auto it = std::upper_bound(l.e, l.e + l.n, k,
                                     [](const Key& a, const E& b) { return a < KeyOf{}(b); });
    return static_cast<std::size_t>(it - l.e);
  }

  // Index of the leaf that holds (or would hold) key k.
  std::size_t leaf_for(const Key& k) const noexcept {
    const auto fi = std::upper_bound(firsts_.begin(), firsts_.end(), k);
    return fi == firsts_.begin() ? 0 : static_cast<std::size_t>(fi - firsts_.begin()) - 1;
  }

  void split(std::size_t li) {
    Leaf& l = *leaves_[li];
    auto right = std::make_unique<Leaf>();
    const std::size_t keep = l.n / 2;
    std::copy(l.e + keep, l.e + l.n, right->e);
    right->n = l.n - keep;
    l.n = keep;
    firsts_.insert(firsts_.begin() + static_cast<std::ptrdiff_t>(li + 1), KeyOf{}(right->e[0]));
    leaves_.insert(leaves_.begin() + static_cast<std::ptrdiff_t>(li + 1), std::move(right));
  }

  // Keeps leaves at least a quarter full by folding a sparse leaf into a neighbour.
  void maybe_merge(std::size_t li) {
    if (leaves_[li]->n >= kCap / 4) return;
    std::size_t left = li;
    if (li + 1 < leaves_.size() && leaves_[li]->n + leaves_[li + 1]->n <= kCap * 3 / 4) {
      left = li;
    } else if (li > 0 && leaves_[li - 1]->n + leaves_[li]->n <= kCap * 3 / 4) {
      left = li - 1;
    } else {
      return;
    }
    Leaf& a = *leaves_[left];
    Leaf& b = *leaves_[left + 1];
    std::copy(b.e, b.e + b.n, a.e + a.n);
    a.n += b.n;
    leaves_.erase(leaves_.begin() + static_cast<std::ptrdiff_t>(left + 1));
    firsts_.erase(firsts_.begin() + static_cast<std::ptrdiff_t>(left + 1));
  }

  std::vector<std::unique_ptr<Leaf>> leaves_;
  std::vector<Key> firsts_;
  std::size_t size_ = 0;
};

}  // namespace v2p::correlator
