// The exported (dynamic) function symbols of an ELF executable and their file offsets, which a
// uprobe is attached at. Only .dynsym: distribution builds of QEMU are stripped, and what a
// build exports is the contract passive attach relies on (docs/attach.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace v2p::pfilter {

struct ElfFunction {
  std::uint64_t address = 0;      // st_value
  std::uint64_t file_offset = 0;  // where its code is in the file: the uprobe's offset
};

// name -> function, for every defined STT_FUNC in .dynsym. Throws v2p::Error when the file is
// not a readable 64-bit ELF.
std::map<std::string, ElfFunction> dynamic_functions(const std::filesystem::path& elf);

// The names of `wanted` that `have` lacks, in the order given.
std::vector<std::string> missing_symbols(const std::map<std::string, ElfFunction>& have,
                                         const std::vector<std::string>& wanted);

}  // namespace v2p::pfilter
