#include "pfilter/slot_table.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <string>

#include "common/error.hpp"
#include "pfilter/blockio.h"

namespace v2p::pfilter {

namespace {

// An mmapable array's values start on a page and follow each other (value_size rounded up to 8
// bytes, here exactly 24), so row r starts at r * 24 KiB: six pages, a page-aligned offset.
constexpr std::size_t kRowBytes = sizeof(v2p_slot_context) * V2P_SLOTS_PER_ROW;
static_assert(sizeof(v2p_slot_context) % 8 == 0);
static_assert(kRowBytes % 4096 == 0);

}  // namespace

SlotTable::SlotTable(int map_fd, std::uint32_t row) : bytes_(kRowBytes) {
  if (row >= V2P_SLOT_ROWS) {
    throw Error("slot table row " + std::to_string(row) + " does not exist (rows 0.." +
                std::to_string(V2P_SLOT_ROWS - 1) + ")");
  }
  if (kRowBytes % static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)) != 0) {
    throw Error("the slot table's rows are not page-aligned on this machine's page size");
  }
  void* p = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd,
                   static_cast<off_t>(row * kRowBytes));
  if (p == MAP_FAILED) throw system_error("cannot map the pfilter slot table");
  base_ = p;
}

SlotTable::~SlotTable() {
  ::munmap(base_, bytes_);
}

void SlotTable::publish(std::uint16_t slot, std::uint32_t vm, std::uint32_t vdisk,
                        std::uint64_t voffset) noexcept {
  if (slot == 0 || slot >= V2P_SLOTS_PER_ROW) return;
  auto* e = static_cast<v2p_slot_context*>(base_) + slot;
  // The SQE's submission (a system call) orders these stores before the bio's queue program.
  e->vm = vm;
  e->vdisk = vdisk;
  e->voffset = voffset;
  const std::uint32_t next = e->generation + 1;
  e->generation = next == 0 ? 1 : next;
}

void SlotTable::clear(std::uint16_t slot) noexcept {
  if (slot == 0 || slot >= V2P_SLOTS_PER_ROW) return;
  static_cast<v2p_slot_context*>(base_)[slot].generation = 0;
}

std::uint32_t SlotTable::rows() noexcept {
  return V2P_SLOT_ROWS;
}

std::uint32_t SlotTable::slots_per_row() noexcept {
  return V2P_SLOTS_PER_ROW;
}

}  // namespace v2p::pfilter
