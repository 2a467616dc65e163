// A built module's bytes, decoded as elf.h structures: read by tests that look at how a module
// was linked, edited by the hostile corpus.
#pragma once

#include "support.hpp"

#include <elf.h>
#include <link.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace test {

// The ELF header, program headers and dynamic section are decoded for an edit to change, then
// written back where they were read from: moving e_phoff or changing e_phnum leaves the tables
// in place. Other bytes are edited through read() and write() at file offsets.
struct elf_image {
  std::string bytes;
  ElfW(Ehdr) header{};
  std::vector<ElfW(Phdr)> segments;
  std::vector<ElfW(Dyn)> dynamic;

  explicit elf_image(const std::string& module) : bytes(test::read_file(module)) {
    header = read<ElfW(Ehdr)>(0);
    segments_at_ = header.e_phoff;
    for (unsigned i = 0; i < header.e_phnum; ++i) {
      segments.push_back(read<ElfW(Phdr)>(segments_at_ + i * sizeof(ElfW(Phdr))));
    }
    dynamic_at_ = segment(PT_DYNAMIC).p_offset;
    for (std::uint64_t at = 0; at < segment(PT_DYNAMIC).p_filesz; at += sizeof(ElfW(Dyn))) {
      dynamic.push_back(read<ElfW(Dyn)>(dynamic_at_ + at));
    }
  }

  std::string encoded() const {
    elf_image copy = *this;
    copy.write(0, header);
    for (std::size_t i = 0; i < segments.size(); ++i) copy.write(segments_at_ + i * sizeof(ElfW(Phdr)), segments[i]);
    for (std::size_t i = 0; i < dynamic.size(); ++i) copy.write(dynamic_at_ + i * sizeof(ElfW(Dyn)), dynamic[i]);
    return copy.bytes;
  }

  template <class T>
  T read(std::uint64_t offset) const {
    if (offset > bytes.size() || sizeof(T) > bytes.size() - offset) FAIL("reading past the end, at " << offset);
    T value;
    std::memcpy(&value, bytes.data() + offset, sizeof value);
    return value;
  }
  template <class T>
  void write(std::uint64_t offset, const T& value) {
    if (offset > bytes.size() || sizeof(T) > bytes.size() - offset) FAIL("writing past the end, at " << offset);
    std::memcpy(bytes.data() + offset, &value, sizeof value);
  }

  std::uint64_t program_headers_end() const { return header.e_phoff + header.e_phnum * sizeof(ElfW(Phdr)); }

  ElfW(Phdr)& segment(ElfW(Word) type) {  // the first of that type
    for (ElfW(Phdr)& found : segments) {
      if (found.p_type == type) return found;
    }
    FAIL("the module has no segment of type " << type);
    throw;
  }
  ElfW(Phdr)& load(std::size_t index) { return *loads().at(index); }  // the index-th PT_LOAD
  ElfW(Phdr)& last_load() { return *loads().back(); }
  ElfW(Dyn)& entry(ElfW(Sxword) tag) {
    for (ElfW(Dyn)& found : dynamic) {
      if (found.d_tag == tag) return found;
    }
    FAIL("the module's dynamic section has no tag " << tag);
    throw;
  }
  std::uint64_t file_offset(ElfW(Addr) address) const {
    for (const ElfW(Phdr)& found : segments) {
      if (found.p_type == PT_LOAD && address >= found.p_vaddr && address - found.p_vaddr < found.p_filesz) {
        return found.p_offset + (address - found.p_vaddr);
      }
    }
    FAIL("address " << address << " is in no PT_LOAD");
    throw;
  }
  // File offsets of the ElfW(Rela) entries of DT_RELA, then of DT_JMPREL.
  std::vector<std::uint64_t> relocations() {
    std::vector<std::uint64_t> out;
    for (auto [table, size] : {std::pair<ElfW(Sxword), ElfW(Sxword)>{DT_RELA, DT_RELASZ}, {DT_JMPREL, DT_PLTRELSZ}}) {
      const std::uint64_t start = file_offset(entry(table).d_un.d_ptr);
      for (std::uint64_t at = 0; at + sizeof(ElfW(Rela)) <= entry(size).d_un.d_val; at += sizeof(ElfW(Rela))) {
        out.push_back(start + at);
      }
    }
    return out;
  }
  // The section header named `name` (FAIL when there is none).
  ElfW(Shdr) section(const std::string& name) const {
    const auto names = read<ElfW(Shdr)>(header.e_shoff + header.e_shstrndx * sizeof(ElfW(Shdr)));
    for (unsigned i = 0; i < header.e_shnum; ++i) {
      const auto found = read<ElfW(Shdr)>(header.e_shoff + i * sizeof(ElfW(Shdr)));
      if (bytes.compare(names.sh_offset + found.sh_name, name.size() + 1, name.c_str(), name.size() + 1) == 0) return found;
    }
    FAIL("the module has no section " << name);
    throw;
  }
  // How many symbols the module defines as STB_GNU_UNIQUE in its dynamic symbol table.
  std::size_t unique_symbol_count() const {
    const ElfW(Shdr) symbols = section(".dynsym");
    std::size_t count = 0;
    for (std::uint64_t at = 0; at + sizeof(ElfW(Sym)) <= symbols.sh_size; at += sizeof(ElfW(Sym))) {
      const auto symbol = read<ElfW(Sym)>(symbols.sh_offset + at);
      if (ELF64_ST_BIND(symbol.st_info) == STB_GNU_UNIQUE && symbol.st_shndx != SHN_UNDEF) ++count;
    }
    return count;
  }
  // The offset of the "relib" note whose record starts with `record`.
  std::uint64_t note_with(const std::string& record) const {
    const std::size_t description = bytes.find(record);
    REQUIRE(description != std::string::npos);
    const std::uint64_t note = description - sizeof(ElfW(Nhdr)) - 8;  // the name "relib\0", padded to 8
    REQUIRE(read<ElfW(Nhdr)>(note).n_namesz == 6);
    return note;
  }

 private:
  std::vector<ElfW(Phdr)*> loads() {
    std::vector<ElfW(Phdr)*> found;
    for (ElfW(Phdr)& segment : segments) {
      if (segment.p_type == PT_LOAD) found.push_back(&segment);
    }
    REQUIRE(found.size() >= 3);  // every test module has a read-only, a code and a data PT_LOAD
    return found;
  }

  std::uint64_t segments_at_ = 0, dynamic_at_ = 0;
};

}  // namespace test
