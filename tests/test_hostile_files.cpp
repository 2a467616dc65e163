// Files made to hurt the reader: text from a file reaches messages escaped, and the records are
// read from a bounded area, whatever the file says about itself.
#include "support.hpp"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <unistd.h>

#include <cstring>

namespace {

// A copy of `module` in `dir` with the first `from` after `after` replaced by `to` (same length).
std::string patched_copy(const test::temp_dir& dir, const char* module, const std::string& after,
                         const std::string& from, const std::string& to) {
  REQUIRE(from.size() == to.size());
  std::string image = test::read_file(module);
  const std::size_t anchor = image.find(after);
  REQUIRE(anchor != std::string::npos);
  const std::size_t at = image.find(from, anchor);
  REQUIRE(at != std::string::npos);
  image.replace(at, from.size(), to);
  return dir.write_file("libpatched.so", image);
}

bool has_control_characters(const std::string& text) {
  for (unsigned char c : text) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("hostile: an escape sequence in a module's version is shown escaped", "[hostile]") {
  test::temp_dir dir;
  const std::string path = patched_copy(dir, TEST_MINIMAL_PATH, "version=", RELIB_VERSION_STRING, "\x1b[31m");
  auto loaded = relib::load_module(path);
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == relib::load_errc::version_mismatch);
  CHECK(test::contains(loaded.error().message, "'\\x1b[31m'"));
  CHECK_FALSE(has_control_characters(loaded.error().message));
  CHECK_FALSE(has_control_characters(loaded.error().reason));
}

TEST_CASE("hostile: control characters in an export's recorded signature are shown escaped", "[hostile]") {
  test::temp_dir dir;
  const std::string path = patched_copy(dir, TEST_GAME_PATH, "export\tadd\t", TEST_SPELLED("int(int, int)", "int (int, int)"),
                                         TEST_SPELLED("int(int,\x1bint)", "int (int,\x1bint)"));
  auto loaded = relib::load_module<game_exports>(path, game_imports{});
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == relib::load_errc::signature_mismatch);
  CHECK(test::contains(loaded.error().message, TEST_SPELLED("int(int,\\x1bint) in the module", "int (int,\\x1bint) in the module")));
  CHECK_FALSE(has_control_characters(loaded.error().message));
}

TEST_CASE("hostile: a path is shown escaped, and UTF-8 in it stays as it is", "[hostile]") {
  auto control = relib::load_module("/nonexistent/\x1b]0;title\x07.so");
  REQUIRE_FALSE(control);
  CHECK(test::contains(control.error().message, "/nonexistent/\\x1b]0;title\\x07.so"));
  CHECK(control.error().module == "/nonexistent/\x1b]0;title\x07.so");  // the field keeps the bytes
  auto accented = relib::load_module("/nonexistent/d\xc3\xa9j\xc3\xa0.so");
  REQUIRE_FALSE(accented);
  CHECK(test::contains(accented.error().message, "/nonexistent/d\xc3\xa9j\xc3\xa0.so"));
  auto broken = relib::load_module("/nonexistent/\xc3(\xc2\x9b.so");  // not UTF-8, and a C1 control
  REQUIRE_FALSE(broken);
  CHECK(test::contains(broken.error().message, "/nonexistent/\\xc3(\\xc2\\x9b.so"));
}

TEST_CASE("hostile: a note segment of 2 GiB is refused without reading it", "[hostile]") {
  test::temp_dir dir;
  std::string image = test::read_file(TEST_MINIMAL_PATH);
  ElfW(Ehdr) header;
  std::memcpy(&header, image.data(), sizeof header);
  bool patched = false;
  ElfW(Off) note_offset = 0;
  for (unsigned i = 0; i < header.e_phnum && !patched; ++i) {
    ElfW(Phdr) segment;
    const std::size_t at = header.e_phoff + i * sizeof segment;
    std::memcpy(&segment, image.data() + at, sizeof segment);
    if (segment.p_type != PT_NOTE) continue;
    note_offset = segment.p_offset;
    segment.p_filesz = segment.p_memsz = ElfW(Xword){2} << 30;
    std::memcpy(image.data() + at, &segment, sizeof segment);
    patched = true;
  }
  REQUIRE(patched);
  const std::string path = dir.write_file("libhuge.so", image);
  // Sparse: the file claims 2 GiB of notes and really has them, as holes.
  REQUIRE(::truncate(path.c_str(), static_cast<off_t>(note_offset + (std::uint64_t{2} << 30))) == 0);
  auto loaded = relib::load_module(path);
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == relib::load_errc::damaged_file);
  CHECK(test::contains(loaded.error().reason, "its notes take 2147483648 bytes or more, and relib reads at most 1048576"));
}

TEST_CASE("hostile: a relocation that aims relib's link slot at the module's code is refused, not written through",
          "[hostile]") {
  std::string image = test::read_file(TEST_MINIMAL_PATH);
  const auto at = [&](std::size_t offset) { return image.data() + offset; };
  ElfW(Ehdr) header;
  std::memcpy(&header, at(0), sizeof header);
  std::vector<ElfW(Shdr)> sections(header.e_shnum);
  std::memcpy(sections.data(), at(header.e_shoff), sections.size() * sizeof(ElfW(Shdr)));
  ElfW(Addr) slot_pointer = 0, code = 0;  // where relib_host_link lives; an address in the code
  for (const ElfW(Shdr)& section : sections) {
    if (section.sh_type == SHT_DYNSYM) {
      const char* names = at(sections[section.sh_link].sh_offset);
      for (std::size_t i = 0; i < section.sh_size / sizeof(ElfW(Sym)); ++i) {
        ElfW(Sym) symbol;
        std::memcpy(&symbol, at(section.sh_offset + i * sizeof symbol), sizeof symbol);
        if (std::strcmp(names + symbol.st_name, "relib_host_link") == 0) slot_pointer = symbol.st_value;
      }
    }
    if (section.sh_type == SHT_PROGBITS && (section.sh_flags & SHF_EXECINSTR) != 0 && code == 0) code = section.sh_addr;
  }
  REQUIRE(slot_pointer != 0);
  REQUIRE(code != 0);
  bool patched = false;
  for (const ElfW(Shdr)& section : sections) {
    if (section.sh_type != SHT_RELA) continue;
    for (std::size_t i = 0; i < section.sh_size / sizeof(ElfW(Rela)); ++i) {
      ElfW(Rela) relocation;
      std::memcpy(&relocation, at(section.sh_offset + i * sizeof relocation), sizeof relocation);
      if (relocation.r_offset != slot_pointer) continue;
      relocation.r_addend = static_cast<ElfW(Sxword)>(code);  // still inside the module: no check of the file sees it
      std::memcpy(at(section.sh_offset + i * sizeof relocation), &relocation, sizeof relocation);
      patched = true;
    }
  }
  // Packed relative relocations (DT_RELR, -z pack-relative-relocs) keep the addend in the word
  // they relocate, in the file's data.
  for (const ElfW(Shdr)& section : sections) {
    if (patched || section.sh_type != SHT_PROGBITS || slot_pointer < section.sh_addr ||
        slot_pointer - section.sh_addr >= section.sh_size) {
      continue;
    }
    std::memcpy(at(section.sh_offset + (slot_pointer - section.sh_addr)), &code, sizeof code);
    patched = true;
  }
  REQUIRE(patched);
  test::temp_dir dir;
  auto loaded = relib::load_module(dir.write_file("libaimed.so", image));
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == relib::load_errc::damaged_file);
  CHECK(test::contains(loaded.error().reason, "relib_host_link"));
}
