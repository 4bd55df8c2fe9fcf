#include "pfilter/elf_symbols.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/error.hpp"

namespace v2p::pfilter {
namespace {

template <class T>
T read_at(const std::string& bytes, std::uint64_t offset, const std::filesystem::path& elf) {
  if (offset > bytes.size() || bytes.size() - offset < sizeof(T))
    throw Error(elf.string() + ": truncated ELF file");
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}

}  // namespace

std::map<std::string, ElfFunction> dynamic_functions(const std::filesystem::path& elf) {
  std::ifstream in(elf, std::ios::binary);
  if (!in) throw system_error("cannot read " + elf.string());
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto eh = read_at<Elf64_Ehdr>(bytes, 0, elf);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    throw Error(elf.string() + " is not a 64-bit ELF executable");

  std::vector<Elf64_Phdr> loads;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    const auto ph = read_at<Elf64_Phdr>(bytes, eh.e_phoff + std::uint64_t{i} * eh.e_phentsize, elf);
    if (ph.p_type == PT_LOAD) loads.push_back(ph);
  }
  std::map<std::string, ElfFunction> out;
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    const auto sh = read_at<Elf64_Shdr>(bytes, eh.e_shoff + std::uint64_t{i} * eh.e_shentsize, elf);
    if (sh.sh_type != SHT_DYNSYM || sh.sh_entsize != sizeof(Elf64_Sym)) continue;
    const auto strtab =
        read_at<Elf64_Shdr>(bytes, eh.e_shoff + std::uint64_t{sh.sh_link} * eh.e_shentsize, elf);
    for (std::uint64_t s = 0; s < sh.sh_size / sizeof(Elf64_Sym); ++s) {
      const auto sym = read_at<Elf64_Sym>(bytes, sh.sh_offset + s * sizeof(Elf64_Sym), elf);
      if (ELF64_ST_TYPE(sym.st_info) != STT_FUNC || sym.st_shndx == SHN_UNDEF) continue;
      const std::uint64_t name_at = strtab.sh_offset + sym.st_name;
      if (name_at >= bytes.size()) continue;
      const char* name = bytes.data() + name_at;
      const auto len = ::strnlen(name, bytes.size() - name_at);
      for (const auto& ph : loads) {
        if (sym.st_value >= ph.p_vaddr && sym.st_value < ph.p_vaddr + ph.p_filesz) {
          out[std::string(name, len)] = {sym.st_value, sym.st_value - ph.p_vaddr + ph.p_offset};
          break;
        }
      }
    }
  }
  return out;
}

std::vector<std::string> missing_symbols(const std::map<std::string, ElfFunction>& have,
                                         const std::vector<std::string>& wanted) {
  std::vector<std::string> missing;
  for (const auto& w : wanted)
    if (!have.contains(w)) missing.push_back(w);
  return missing;
}

}  // namespace v2p::pfilter
