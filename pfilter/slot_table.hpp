// An export's row of the probe's slot table: where the data path publishes each slot's context
// {vm, vdisk, voffset} before it submits the SQE that carries the slot, so the kernel can tell
// that a tagged bio repeats what the map knows (docs/pfilter.md, "The slot table"). Plain stores
// into a shared memory mapping: no bpf() call, so an unprivileged export can use it with a map fd
// it received (SCM_RIGHTS) and the row number the probe's owner gave it (Probe::add_export).
#pragma once

#include <cstddef>
#include <cstdint>

namespace v2p::pfilter {

class SlotTable {
 public:
  // Maps row `row` of the table behind map_fd (Probe::slot_table_fd(), a received copy, or the
  // pin's bpf_obj_get). The fd is not kept. Throws v2p::Error.
  SlotTable(int map_fd, std::uint32_t row);
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  // Called before submitting the I/O tagged with `slot` (1..1023), while the slot is held.
  // A slot of 0 or beyond the row is ignored (its I/O is simply never suppressed).
  void publish(std::uint16_t slot, std::uint32_t vm, std::uint32_t vdisk,
               std::uint64_t voffset) noexcept;
  // Marks the slot unknown: its bios are reported again.
  void clear(std::uint16_t slot) noexcept;

  // Rows in the table and entries in a row (V2P_SLOT_ROWS, V2P_SLOTS_PER_ROW).
  static std::uint32_t rows() noexcept;
  static std::uint32_t slots_per_row() noexcept;

 private:
  void* base_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace v2p::pfilter
