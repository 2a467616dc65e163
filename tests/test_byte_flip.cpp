// Byte flips in the parts of a module the dynamic loader trusts: the ELF header and program
// headers and the dynamic section (and, with RELIB_BYTE_FLIP_RELOCATIONS=1, the first
// relocations of DT_RELA). Each mutant is loaded and
// unloaded by a process of its own (this executable started again, with address space
// randomization off where the system allows, so that a relocation pointing at random memory
// hits the same memory on every run); refusing the mutant is fine, loading it is fine, crashing
// or hanging is not. A crash is listed with the field flipped, the signal, the step (load_module
// or unload) and where the program counter was.
//
// The mutants are the same on every run: a fixed-seed generator over the bytes of the test
// modules. RELIB_BYTE_FLIPS=N changes their number (600 by default), RELIB_BYTE_FLIP_SEED=S the
// seed, RELIB_BYTE_FLIP_JOBS=J how many run at once (2), RELIB_BYTE_FLIP_CRASH_DIR where crashing
// mutants are kept (byte-flip-crashes in the build tree), and RELIB_BYTE_FLIP_LOG=<file> lists
// every mutant's outcome. The hidden test case "byte flip: load one file in this process" loads
// RELIB_BYTE_FLIP_FILE=<a kept mutant> again, in the foreground.
#include "support.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <regex>
#include <sstream>

namespace {

/* ---- The modules and their regions ---- */

std::string env_or(const char* name, const std::string& fallback);  // the variable's value, or fallback

enum class interface_kind { none, game };

// A byte range of a module file, [begin, end).
struct region {
  std::string name;
  std::size_t begin = 0;
  std::size_t end = 0;
};

struct module_image {
  std::string name;  // "minimal" or "game": each copy's file name starts with it, which tells its interface
  std::string bytes;
  std::vector<region> regions;
  ElfW(Ehdr) header{};
  std::vector<ElfW(Phdr)> segments;
  std::size_t dynamic_offset = 0;
  std::vector<ElfW(Dyn)> dynamic;  // up to and including DT_NULL
  std::size_t relocations_offset = 0;
};

template <class T>
T read_at(const std::string& bytes, std::size_t offset) {
  T value;
  REQUIRE(offset <= bytes.size());
  REQUIRE(sizeof value <= bytes.size() - offset);
  std::memcpy(&value, bytes.data() + offset, sizeof value);
  return value;
}

// The file offset of a virtual address, through the PT_LOAD segments; npos if no file bytes hold it.
std::size_t file_offset_of(const std::vector<ElfW(Phdr)>& segments, std::uint64_t address) {
  for (const ElfW(Phdr)& segment : segments) {
    if (segment.p_type == PT_LOAD && address >= segment.p_vaddr && address - segment.p_vaddr < segment.p_filesz) {
      return static_cast<std::size_t>(segment.p_offset + (address - segment.p_vaddr));
    }
  }
  return std::string::npos;
}

constexpr std::size_t relocations_flipped = 8;  // how many of the first DT_RELA entries may be hit

module_image read_module(const std::string& name, const char* path) {
  module_image image;
  image.name = name;
  image.bytes = test::read_file(path);
  const std::string& bytes = image.bytes;
  image.header = read_at<ElfW(Ehdr)>(bytes, 0);
  REQUIRE(std::memcmp(image.header.e_ident, ELFMAG, SELFMAG) == 0);
  REQUIRE(image.header.e_phentsize == sizeof(ElfW(Phdr)));
  REQUIRE(image.header.e_phoff == sizeof(ElfW(Ehdr)));  // one contiguous region
  for (unsigned i = 0; i < image.header.e_phnum; ++i) {
    image.segments.push_back(read_at<ElfW(Phdr)>(bytes, image.header.e_phoff + i * sizeof(ElfW(Phdr))));
  }
  image.regions.push_back({"header", 0, sizeof(ElfW(Ehdr)) + image.segments.size() * sizeof(ElfW(Phdr))});

  const auto dynamic = std::find_if(image.segments.begin(), image.segments.end(),
                                    [](const ElfW(Phdr)& segment) { return segment.p_type == PT_DYNAMIC; });
  REQUIRE(dynamic != image.segments.end());
  image.dynamic_offset = static_cast<std::size_t>(dynamic->p_offset);
  for (std::size_t at = image.dynamic_offset; at + sizeof(ElfW(Dyn)) <= dynamic->p_offset + dynamic->p_filesz;
       at += sizeof(ElfW(Dyn))) {
    image.dynamic.push_back(read_at<ElfW(Dyn)>(bytes, at));
    if (image.dynamic.back().d_tag == DT_NULL) break;  // what follows is spare room nobody reads
  }
  REQUIRE(!image.dynamic.empty());
  image.regions.push_back(
      {"dynamic", image.dynamic_offset, image.dynamic_offset + image.dynamic.size() * sizeof(ElfW(Dyn))});

  std::uint64_t rela_address = 0, rela_size = 0;
  for (const ElfW(Dyn)& entry : image.dynamic) {
    if (entry.d_tag == DT_RELA) rela_address = entry.d_un.d_ptr;
    if (entry.d_tag == DT_RELASZ) rela_size = entry.d_un.d_val;
  }
  const std::size_t rela_offset = rela_address ? file_offset_of(image.segments, rela_address) : std::string::npos;
  // Off by default: a relocation moved to another slot or value inside the module is a different
  // program, not a malformed file, and no check of the file can refuse it (docs/safety.md).
  const bool flip_relocations = env_or("RELIB_BYTE_FLIP_RELOCATIONS", "0") != "0";
  if (flip_relocations && rela_offset != std::string::npos && rela_size >= sizeof(ElfW(Rela))) {
    image.relocations_offset = rela_offset;
    const std::size_t length =
        static_cast<std::size_t>(std::min<std::uint64_t>(rela_size, relocations_flipped * sizeof(ElfW(Rela))));
    REQUIRE(rela_offset + length <= bytes.size());
    image.regions.push_back({"relocations", rela_offset, rela_offset + length});
  }
  return image;
}

/* ---- Naming the field at an offset ---- */

struct field {
  std::size_t offset;
  std::size_t size;
  const char* name;
};

#define RELIB_TEST_FIELD(type, member) field{offsetof(type, member), sizeof(type::member), #member}

const field header_fields[] = {
    {EI_MAG0, 4, "e_ident[EI_MAG]"}, {EI_CLASS, 1, "e_ident[EI_CLASS]"}, {EI_DATA, 1, "e_ident[EI_DATA]"},
    {EI_VERSION, 1, "e_ident[EI_VERSION]"}, {EI_OSABI, 1, "e_ident[EI_OSABI]"},
    {EI_ABIVERSION, 1, "e_ident[EI_ABIVERSION]"}, {EI_PAD, EI_NIDENT - EI_PAD, "e_ident[EI_PAD]"},
    RELIB_TEST_FIELD(ElfW(Ehdr), e_type), RELIB_TEST_FIELD(ElfW(Ehdr), e_machine),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_version), RELIB_TEST_FIELD(ElfW(Ehdr), e_entry),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_phoff), RELIB_TEST_FIELD(ElfW(Ehdr), e_shoff),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_flags), RELIB_TEST_FIELD(ElfW(Ehdr), e_ehsize),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_phentsize), RELIB_TEST_FIELD(ElfW(Ehdr), e_phnum),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_shentsize), RELIB_TEST_FIELD(ElfW(Ehdr), e_shnum),
    RELIB_TEST_FIELD(ElfW(Ehdr), e_shstrndx)};

const field segment_fields[] = {
    RELIB_TEST_FIELD(ElfW(Phdr), p_type),   RELIB_TEST_FIELD(ElfW(Phdr), p_flags),
    RELIB_TEST_FIELD(ElfW(Phdr), p_offset), RELIB_TEST_FIELD(ElfW(Phdr), p_vaddr),
    RELIB_TEST_FIELD(ElfW(Phdr), p_paddr),  RELIB_TEST_FIELD(ElfW(Phdr), p_filesz),
    RELIB_TEST_FIELD(ElfW(Phdr), p_memsz),  RELIB_TEST_FIELD(ElfW(Phdr), p_align)};

const field dynamic_fields[] = {RELIB_TEST_FIELD(ElfW(Dyn), d_tag), field{offsetof(ElfW(Dyn), d_un), sizeof(ElfW(Dyn)::d_un), "d_val"}};

const field relocation_fields[] = {RELIB_TEST_FIELD(ElfW(Rela), r_offset), RELIB_TEST_FIELD(ElfW(Rela), r_info),
                                   RELIB_TEST_FIELD(ElfW(Rela), r_addend)};

#undef RELIB_TEST_FIELD

// "p_filesz[byte 5]" for byte 5 of a multi-byte field.
template <std::size_t N>
std::string field_at(const field (&fields)[N], std::size_t offset) {
  for (const field& f : fields) {
    if (offset >= f.offset && offset < f.offset + f.size) {
      std::string name = f.name;
      if (f.size > 1) name += "[byte " + std::to_string(offset - f.offset) + "]";
      return name;
    }
  }
  return "padding";
}

std::string segment_type_name(std::uint32_t type) {
  switch (type) {
    case PT_NULL: return "PT_NULL";
    case PT_LOAD: return "PT_LOAD";
    case PT_DYNAMIC: return "PT_DYNAMIC";
    case PT_INTERP: return "PT_INTERP";
    case PT_NOTE: return "PT_NOTE";
    case PT_PHDR: return "PT_PHDR";
    case PT_TLS: return "PT_TLS";
    case PT_GNU_EH_FRAME: return "PT_GNU_EH_FRAME";
    case PT_GNU_STACK: return "PT_GNU_STACK";
    case PT_GNU_RELRO: return "PT_GNU_RELRO";
    case PT_GNU_PROPERTY: return "PT_GNU_PROPERTY";
    default: return "p_type " + std::to_string(type);
  }
}

std::string dynamic_tag_name(std::int64_t tag) {
  switch (tag) {
#define RELIB_TEST_TAG(name) \
  case name: return #name;
    RELIB_TEST_TAG(DT_NULL) RELIB_TEST_TAG(DT_NEEDED) RELIB_TEST_TAG(DT_PLTRELSZ) RELIB_TEST_TAG(DT_PLTGOT)
    RELIB_TEST_TAG(DT_HASH) RELIB_TEST_TAG(DT_STRTAB) RELIB_TEST_TAG(DT_SYMTAB) RELIB_TEST_TAG(DT_RELA)
    RELIB_TEST_TAG(DT_RELASZ) RELIB_TEST_TAG(DT_RELAENT) RELIB_TEST_TAG(DT_STRSZ) RELIB_TEST_TAG(DT_SYMENT)
    RELIB_TEST_TAG(DT_INIT) RELIB_TEST_TAG(DT_FINI) RELIB_TEST_TAG(DT_SONAME) RELIB_TEST_TAG(DT_RPATH)
    RELIB_TEST_TAG(DT_SYMBOLIC) RELIB_TEST_TAG(DT_REL) RELIB_TEST_TAG(DT_RELSZ) RELIB_TEST_TAG(DT_RELENT)
    RELIB_TEST_TAG(DT_PLTREL) RELIB_TEST_TAG(DT_DEBUG) RELIB_TEST_TAG(DT_TEXTREL) RELIB_TEST_TAG(DT_JMPREL)
    RELIB_TEST_TAG(DT_BIND_NOW) RELIB_TEST_TAG(DT_INIT_ARRAY) RELIB_TEST_TAG(DT_FINI_ARRAY)
    RELIB_TEST_TAG(DT_INIT_ARRAYSZ) RELIB_TEST_TAG(DT_FINI_ARRAYSZ) RELIB_TEST_TAG(DT_RUNPATH)
    RELIB_TEST_TAG(DT_FLAGS) RELIB_TEST_TAG(DT_PREINIT_ARRAY) RELIB_TEST_TAG(DT_PREINIT_ARRAYSZ)
    RELIB_TEST_TAG(DT_GNU_HASH) RELIB_TEST_TAG(DT_VERSYM) RELIB_TEST_TAG(DT_RELACOUNT) RELIB_TEST_TAG(DT_RELCOUNT)
    RELIB_TEST_TAG(DT_FLAGS_1) RELIB_TEST_TAG(DT_VERDEF) RELIB_TEST_TAG(DT_VERDEFNUM) RELIB_TEST_TAG(DT_VERNEED)
    RELIB_TEST_TAG(DT_VERNEEDNUM)
#undef RELIB_TEST_TAG
    default: return "tag " + std::to_string(tag);
  }
}

// The ELF field at `offset`, named from the unmutated file: "Phdr[3] (PT_LOAD).p_filesz[byte 0]".
std::string field_name(const module_image& image, std::size_t offset) {
  if (offset < sizeof(ElfW(Ehdr))) return "Ehdr." + field_at(header_fields, offset);
  const std::size_t segments_end = sizeof(ElfW(Ehdr)) + image.segments.size() * sizeof(ElfW(Phdr));
  if (offset < segments_end) {
    const std::size_t i = (offset - sizeof(ElfW(Ehdr))) / sizeof(ElfW(Phdr));
    return "Phdr[" + std::to_string(i) + "] (" + segment_type_name(image.segments[i].p_type) + ")." +
           field_at(segment_fields, (offset - sizeof(ElfW(Ehdr))) % sizeof(ElfW(Phdr)));
  }
  if (offset >= image.dynamic_offset && offset < image.dynamic_offset + image.dynamic.size() * sizeof(ElfW(Dyn))) {
    const std::size_t i = (offset - image.dynamic_offset) / sizeof(ElfW(Dyn));
    return "dynamic[" + std::to_string(i) + "] (" + dynamic_tag_name(image.dynamic[i].d_tag) + ")." +
           field_at(dynamic_fields, (offset - image.dynamic_offset) % sizeof(ElfW(Dyn)));
  }
  if (image.relocations_offset != 0 && offset >= image.relocations_offset &&
      offset < image.relocations_offset + relocations_flipped * sizeof(ElfW(Rela))) {
    const std::size_t i = (offset - image.relocations_offset) / sizeof(ElfW(Rela));
    const std::size_t within = (offset - image.relocations_offset) % sizeof(ElfW(Rela));
    std::string name = field_at(relocation_fields, within);
    if (within >= offsetof(ElfW(Rela), r_info) && within < offsetof(ElfW(Rela), r_info) + sizeof(ElfW(Xword))) {
      // r_info holds the type in its low 32 bits and the symbol index in the high 32 (64-bit ELF).
      name += (within - offsetof(ElfW(Rela), r_info) < 4) ? " (type)" : " (symbol)";
    }
    return "Rela[" + std::to_string(i) + "]." + name;
  }
  return "offset " + std::to_string(offset);
}

// The name without entry numbers and bytes, to group crashes: "Phdr (PT_LOAD).p_filesz".
std::string field_kind(const std::string& name) {
  static const std::regex index(R"(\[[0-9]+\]|\[byte [0-9]+\])");
  return std::regex_replace(name, index, "");
}

std::string hex_byte(unsigned value) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", value & 0xffu);
  return text;
}

std::string signal_name(int number) {
  switch (number) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGABRT: return "SIGABRT";
    case SIGILL: return "SIGILL";
    case SIGFPE: return "SIGFPE";
    case SIGTRAP: return "SIGTRAP";
    case SIGALRM: return "SIGALRM (hang)";
    case SIGKILL: return "SIGKILL";
    case SIGSYS: return "SIGSYS";
    default: return "signal " + std::to_string(number);
  }
}

/* ---- The mutants ---- */

// splitmix64: the same numbers on every platform and standard library.
class random_bits {
 public:
  explicit random_bits(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
  }
  std::size_t below(std::size_t bound) { return static_cast<std::size_t>(next() % bound); }

 private:
  std::uint64_t state_;
};

struct flip {
  std::size_t offset;
  unsigned char from;
  unsigned char to;
};

struct mutant {
  std::size_t index;
  const module_image* image;
  const region* area;
  std::vector<flip> flips;
};

std::vector<mutant> make_mutants(const std::vector<module_image>& images, std::size_t count, std::uint64_t seed) {
  random_bits random(seed);
  std::vector<mutant> mutants;
  for (std::size_t i = 0; i < count; ++i) {
    const module_image& image = images[i % images.size()];
    const region& area = image.regions[random.below(image.regions.size())];
    const std::size_t roll = random.below(10);
    const std::size_t flips = roll < 7 ? 1 : roll < 9 ? 2 : 3;
    mutant m{i, &image, &area, {}};
    while (m.flips.size() < flips) {
      const std::size_t offset = area.begin + random.below(area.end - area.begin);
      if (std::any_of(m.flips.begin(), m.flips.end(), [&](const flip& f) { return f.offset == offset; })) continue;
      const unsigned char from = static_cast<unsigned char>(image.bytes[offset]);
      const bool one_bit = random.below(2) == 0;
      const unsigned change = one_bit ? 1u << random.below(8) : 1u + static_cast<unsigned>(random.below(255));
      m.flips.push_back({offset, from, static_cast<unsigned char>(from ^ change)});
    }
    mutants.push_back(std::move(m));
  }
  return mutants;
}

// Whether the mutant only changed where relocations write (r_offset) or what they write (r_addend)
// while keeping both inside the module: another slot of a writable segment, another address of
// the image. The file is then as well-formed as the original, and no check of it can tell; what
// breaks is the program's data, as with a flip in .data or .text.
bool relocations_stay_inside(const mutant& m) {
  if (m.area->name != "relocations") return false;
  std::string bytes = m.image->bytes;
  for (const flip& f : m.flips) bytes[f.offset] = static_cast<char>(f.to);
  std::uint64_t image_end = 0;
  for (const ElfW(Phdr)& segment : m.image->segments) {
    if (segment.p_type == PT_LOAD) image_end = std::max<std::uint64_t>(image_end, segment.p_vaddr + segment.p_memsz);
  }
  for (const flip& f : m.flips) {
    const std::size_t entry = m.image->relocations_offset +
                              (f.offset - m.image->relocations_offset) / sizeof(ElfW(Rela)) * sizeof(ElfW(Rela));
    const std::size_t within = f.offset - entry;
    const ElfW(Rela) relocation = read_at<ElfW(Rela)>(bytes, entry);
    if (within < offsetof(ElfW(Rela), r_offset) + sizeof relocation.r_offset) {  // r_offset comes first
      const bool writable = std::any_of(m.image->segments.begin(), m.image->segments.end(), [&](const ElfW(Phdr)& s) {
        return s.p_type == PT_LOAD && (s.p_flags & PF_W) && relocation.r_offset >= s.p_vaddr &&
               relocation.r_offset - s.p_vaddr + sizeof(ElfW(Addr)) <= s.p_memsz;
      });
      if (!writable) return false;
    } else if (within >= offsetof(ElfW(Rela), r_addend)) {
      if (relocation.r_addend < 0 || static_cast<std::uint64_t>(relocation.r_addend) > image_end) return false;
    } else {
      return false;  // r_info
    }
  }
  return true;
}

std::string describe_flips(const mutant& m) {
  std::string text;
  for (const flip& f : m.flips) {
    if (!text.empty()) text += " + ";
    text += field_name(*m.image, f.offset) + " @" + std::to_string(f.offset) + " " + hex_byte(f.from) + "->" +
            hex_byte(f.to);
  }
  return text;
}

std::string mutant_file_name(const mutant& m) {
  char number[16];
  std::snprintf(number, sizeof number, "%05zu", m.index);
  return m.image->name + "-" + number + ".so";
}

/* ---- Loading, in this process or in a child ---- */

void say(int fd, const std::string& text) {
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t wrote = ::write(fd, text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote <= 0) return;
    done += static_cast<std::size_t>(wrote);
  }
}

// Loads and unloads `path`, telling each step to `fd`: "load", then "refused <code>" or
// "loaded", "unload", then "unloaded" or "unload refused <code>".
template <class Exports, class Imports>
void load_and_unload(const std::string& path, int fd) {
  say(fd, "load\n");
  auto loaded = relib::load_module<Exports>(path, Imports{});
  if (!loaded) {
    say(fd, std::string("refused ") + relib::to_string(loaded.error().code) + "\n");
    return;
  }
  say(fd, "loaded\nunload\n");
  auto unloaded = loaded->unload();
  say(fd, unloaded ? std::string("unloaded\n") : std::string("unload refused ") + relib::to_string(unloaded.error().code) + "\n");
}

void load_and_unload(interface_kind interface, const std::string& path, int fd) {
  if (interface == interface_kind::game) {
    load_and_unload<game_exports, game_imports>(path, fd);
  } else {
    load_and_unload<relib::no_exports, relib::no_imports>(path, fd);
  }
}

// A file whose name starts with "game" is loaded with the game interface, any other without one.
interface_kind interface_of_file(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  return name.rfind("game", 0) == 0 ? interface_kind::game : interface_kind::none;
}

/* In the child, a crash first tells the report pipe where it happened: "crash <signal> pc=<hex>
   addr=<hex> map=<the /proc/self/maps line holding pc>", with async-signal-safe calls only. */
int crash_report_fd = -1;
char maps_text[1 << 18];

void put_hex(char*& out, std::uint64_t value) {
  *out++ = '0';
  *out++ = 'x';
  int shift = 60;
  while (shift > 0 && ((value >> shift) & 0xf) == 0) shift -= 4;
  for (; shift >= 0; shift -= 4) *out++ = "0123456789abcdef"[(value >> shift) & 0xf];
}

std::uint64_t get_hex(const char*& at, const char* end) {
  std::uint64_t value = 0;
  for (; at < end; ++at) {
    const char c = *at;
    const int digit = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (digit < 0) break;
    value = value << 4 | static_cast<unsigned>(digit);
  }
  return value;
}

extern "C" void on_crash(int number, siginfo_t* info, void* context) {
  std::uint64_t pc = 0;
#if defined(__x86_64__)
  pc = static_cast<std::uint64_t>(static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RIP]);
#elif defined(__aarch64__)
  pc = static_cast<ucontext_t*>(context)->uc_mcontext.pc;
#else
  (void)context;
#endif
  char line[512];
  char* out = line;
  const char head[] = "crash ";
  for (const char* c = head; *c; ++c) *out++ = *c;
  if (number >= 10) *out++ = static_cast<char>('0' + number / 10);
  *out++ = static_cast<char>('0' + number % 10);
  for (const char* c = " pc="; *c; ++c) *out++ = *c;
  put_hex(out, pc);
  for (const char* c = " addr="; *c; ++c) *out++ = *c;
  put_hex(out, reinterpret_cast<std::uintptr_t>(info->si_addr));
  for (const char* c = " map="; *c; ++c) *out++ = *c;
  const int maps = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  std::size_t size = 0;
  if (maps >= 0) {
    ssize_t got;
    while (size < sizeof maps_text && (got = ::read(maps, maps_text + size, sizeof maps_text - size)) > 0) {
      size += static_cast<std::size_t>(got);
    }
    ::close(maps);
  }
  for (const char* at = maps_text; at < maps_text + size;) {
    const char* end = at;
    while (end < maps_text + size && *end != '\n') ++end;
    const char* cursor = at;
    const std::uint64_t first = get_hex(cursor, end);
    ++cursor;  // '-'
    const std::uint64_t last = get_hex(cursor, end);
    if (pc >= first && pc < last) {
      for (const char* c = at; c < end && out < line + sizeof line - 2; ++c) *out++ = *c;
      break;
    }
    at = end + 1;
  }
  *out++ = '\n';
  if (crash_report_fd >= 0) {
    [[maybe_unused]] const ssize_t ignored = ::write(crash_report_fd, line, static_cast<std::size_t>(out - line));
  }
  ::raise(number);  // delivered with the default action (SA_RESETHAND) once this returns
}

// The child's side, in the process started for one mutant: load and unload `path`, tell each step
// and any crash to `report_fd`, and exit without going back into Catch2.
[[noreturn]] void load_reporting_crashes(const std::string& path, int report_fd) {
  static char crash_stack[1 << 16];
  stack_t alternate{};
  alternate.ss_sp = crash_stack;
  alternate.ss_size = sizeof crash_stack;
  ::sigaltstack(&alternate, nullptr);
  crash_report_fd = report_fd;
  struct sigaction crash {};
  crash.sa_sigaction = on_crash;
  crash.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_ONSTACK;
  sigemptyset(&crash.sa_mask);
  for (int number : {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGTRAP, SIGABRT}) ::sigaction(number, &crash, nullptr);
  try {
    load_and_unload(interface_of_file(path), path, report_fd);
  } catch (const std::exception& error) {
    say(report_fd, std::string("exception ") + error.what() + "\n");
    ::_exit(3);
  } catch (...) {
    say(report_fd, "exception of unknown type\n");
    ::_exit(3);
  }
  ::_exit(0);
}

// Whether children can run with address space randomization off, so that a relocation pointing
// at random memory hits the same memory on every run.
bool can_fix_layout() {
  const int current = ::personality(0xffffffff);
  if (current < 0 || (current & ADDR_NO_RANDOMIZE) != 0) return current >= 0;
  const bool fixed = ::personality(static_cast<unsigned long>(current | ADDR_NO_RANDOMIZE)) >= 0 &&
                     (::personality(0xffffffff) & ADDR_NO_RANDOMIZE) != 0;
  ::personality(static_cast<unsigned long>(current));
  return fixed;
}

constexpr const char* load_one_file = "byte flip: load one file in this process";

// Starts this executable again, in a new process, to load `path` through the test case above.
pid_t start_child(const std::string& executable, const std::string& path, int report_fd, int log_fd) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid != 0) return pid;
  // Catch2's handlers, inherited, would report a crash of the child as the parent's test failing.
  for (int number = 1; number < NSIG; ++number) {
    if (number != SIGKILL && number != SIGSTOP) ::signal(number, SIG_DFL);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::dup2(log_fd, STDOUT_FILENO);
  ::dup2(log_fd, STDERR_FILENO);
  ::fcntl(report_fd, F_SETFD, 0);  // the one descriptor the new program keeps
  const int current = ::personality(0xffffffff);
  if (current >= 0) ::personality(static_cast<unsigned long>(current | ADDR_NO_RANDOMIZE));
  ::setenv("RELIB_BYTE_FLIP_FILE", path.c_str(), 1);
  ::setenv("RELIB_BYTE_FLIP_REPORT_FD", std::to_string(report_fd).c_str(), 1);
  ::alarm(20);  // a hang becomes SIGALRM
  char* const arguments[] = {const_cast<char*>(executable.c_str()), const_cast<char*>("--out"),
                             const_cast<char*>("/dev/null"), const_cast<char*>(load_one_file), nullptr};
  ::execv(executable.c_str(), arguments);
  say(STDERR_FILENO, "cannot run " + executable + ": " + std::strerror(errno) + "\n");
  ::_exit(126);
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value && *value ? std::string(value) : fallback;
}

std::string first_lines(const std::string& text, std::size_t limit) {
  std::string out;
  for (char c : text.substr(0, limit)) {
    out += (c == '\n') ? std::string(" | ") : (static_cast<unsigned char>(c) < 0x20 ? std::string("?") : std::string(1, c));
  }
  while (out.size() >= 3 && out.compare(out.size() - 3, 3, " | ") == 0) out.resize(out.size() - 3);
  return out;
}

std::string this_executable() {
  std::error_code ignored;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ignored);
  return exe.empty() ? std::string("relib_byte_flip_tests") : exe.string();
}

// What one child did.
struct outcome {
  std::string steps;  // what it reported, one step a line
  int status = 0;     // from waitpid
  std::string log;    // its stdout and stderr

  bool crashed() const { return !WIFEXITED(status) || WEXITSTATUS(status) != 0; }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::istringstream in(steps);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  std::string last_step() const {
    std::string last;
    for (const std::string& line : lines()) {
      if (line.rfind("crash ", 0) != 0) last = line;
    }
    return last;
  }
  // Where the crash handler saw the program counter: "ld-linux-x86-64.so.2+0x1b2c3"; the copy
  // of the mutant is "module".
  std::string where(bool with_offset) const {
    for (const std::string& line : lines()) {
      if (line.rfind("crash ", 0) != 0) continue;
      const std::size_t pc_at = line.find(" pc="), map_at = line.find(" map=");
      if (pc_at == std::string::npos || map_at == std::string::npos) return {};
      const std::uint64_t pc = std::strtoull(line.c_str() + pc_at + 4, nullptr, 16);
      std::istringstream map(line.substr(map_at + 5));
      std::string range, permissions, offset, device, inode, file;
      map >> range >> permissions >> offset >> device >> inode;
      std::getline(map >> std::ws, file);
      if (range.empty()) return "an unmapped address";
      const std::uint64_t start = std::strtoull(range.c_str(), nullptr, 16);
      std::string name = file.empty() ? std::string("anonymous memory") : std::filesystem::path(file).filename().string();
      if (name.find("-slot") != std::string::npos) name = "module";
      if (!with_offset) return name;
      char text[32];
      std::snprintf(text, sizeof text, "+0x%llx",
                    static_cast<unsigned long long>(pc - start + std::strtoull(offset.c_str(), nullptr, 16)));
      return name + text;
    }
    return {};
  }
  std::string how(bool with_offset = true) const {
    std::string text = WIFSIGNALED(status) ? signal_name(WTERMSIG(status))
                                           : "exit status " + std::to_string(WEXITSTATUS(status));
    const std::string step = last_step();
    if (step == "load") text += " in load_module";
    else if (step == "unload") text += " in unload";
    else if (!step.empty()) text += " after '" + step + "'";
    const std::string at = where(with_offset);
    if (!at.empty()) text += " (pc in " + at + ")";
    return text;
  }
};

// One child at a time per slot; each slot has its own copy of each module, patched in place.
struct slot {
  std::vector<std::string> copies;  // one per module image, in images' order
  pid_t pid = -1;
  int report_fd = -1;
  const mutant* running = nullptr;
};

void patch(const std::string& path, const mutant& m, bool mutated) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  for (const flip& f : m.flips) {
    const unsigned char byte = mutated ? f.to : f.from;
    REQUIRE(::pwrite(fd, &byte, 1, static_cast<off_t>(f.offset)) == 1);
  }
  ::close(fd);
}

std::string read_all(int fd) {
  std::string text;
  char buffer[512];
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
  }
  return text;
}

std::size_t env_count(const char* name, std::size_t fallback) {
  const std::string text = env_or(name, "");
  if (text.empty()) return fallback;
  return static_cast<std::size_t>(std::strtoull(text.c_str(), nullptr, 0));
}

}  // namespace

TEST_CASE("byte flip: mutants of the ELF header, the program headers and the dynamic section never crash the host",
          "[byte-flip]") {
  const std::size_t count = env_count("RELIB_BYTE_FLIPS", 600);
  const std::uint64_t seed = env_count("RELIB_BYTE_FLIP_SEED", 20240501);
  const std::size_t jobs = std::max<std::size_t>(1, env_count("RELIB_BYTE_FLIP_JOBS", 2));

  const std::string executable = this_executable();
  const bool fixed_layout = can_fix_layout();

  std::vector<module_image> images;
  images.push_back(read_module("minimal", TEST_MINIMAL_PATH));
  images.push_back(read_module("game", TEST_GAME_PATH));
  const std::vector<mutant> mutants = make_mutants(images, count, seed);

  test::temp_dir dir;
  std::vector<slot> slots(jobs);
  for (std::size_t s = 0; s < slots.size(); ++s) {
    for (const module_image& image : images) {
      slots[s].copies.push_back(dir.write_file(image.name + "-slot" + std::to_string(s) + ".so", image.bytes));
    }
  }
  std::vector<outcome> outcomes(mutants.size());

  auto reap = [&] {
    int status = 0;
    pid_t pid;
    do {
      pid = ::waitpid(-1, &status, 0);
    } while (pid < 0 && errno == EINTR);
    REQUIRE(pid > 0);
    const auto done = std::find_if(slots.begin(), slots.end(), [&](const slot& s) { return s.pid == pid; });
    REQUIRE(done != slots.end());
    const std::size_t s = static_cast<std::size_t>(done - slots.begin());
    outcome& result = outcomes[done->running->index];
    result.steps = read_all(done->report_fd);
    ::close(done->report_fd);
    result.status = status;
    if (result.crashed()) result.log = test::read_file(dir.path() + "/log" + std::to_string(s));
    const std::size_t module = static_cast<std::size_t>(done->running->image - images.data());
    patch(done->copies[module], *done->running, false);
    done->pid = -1;
    done->running = nullptr;
  };

  for (const mutant& m : mutants) {
    auto free_slot = std::find_if(slots.begin(), slots.end(), [](const slot& s) { return s.pid < 0; });
    if (free_slot == slots.end()) {
      reap();
      free_slot = std::find_if(slots.begin(), slots.end(), [](const slot& s) { return s.pid < 0; });
    }
    const std::size_t s = static_cast<std::size_t>(free_slot - slots.begin());
    const std::string& copy = free_slot->copies[static_cast<std::size_t>(m.image - images.data())];
    patch(copy, m, true);
    int report[2];
    REQUIRE(::pipe2(report, O_CLOEXEC) == 0);
    const std::string log_path = dir.path() + "/log" + std::to_string(s);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(log_fd >= 0);
    const pid_t pid = start_child(executable, copy, report[1], log_fd);
    REQUIRE(pid > 0);
    ::close(report[1]);
    ::close(log_fd);
    free_slot->pid = pid;
    free_slot->report_fd = report[0];
    free_slot->running = &m;
  }
  while (std::any_of(slots.begin(), slots.end(), [](const slot& s) { return s.pid >= 0; })) reap();

  // Tally, and keep each crashing mutant where it can be loaded again.
  std::map<std::string, std::size_t> refused;  // by load_errc name
  std::size_t loaded = 0, unload_refused = 0;
  std::vector<const mutant*> crashes;
  for (const mutant& m : mutants) {
    const outcome& result = outcomes[m.index];
    if (result.crashed()) {
      crashes.push_back(&m);
      continue;
    }
    const std::string step = result.last_step();
    if (step.rfind("refused ", 0) == 0) ++refused[step.substr(8)];
    else if (step == "unloaded") ++loaded;
    else ++unload_refused;
  }
  std::string summary = std::to_string(mutants.size()) + " mutants (seed " + std::to_string(seed) + "): " +
                        std::to_string(loaded) + " loaded and unloaded, " + std::to_string(unload_refused) +
                        " loaded but unload refused, " + std::to_string(crashes.size()) + " crashed; refused:";
  for (const auto& [code, n] : refused) summary += " " + code + " " + std::to_string(n) + ",";
  if (!refused.empty()) summary.pop_back();
  if (!fixed_layout) {
    summary += "; address space randomization could not be turned off for the children, so a mutant whose"
               " relocation points at random memory may crash on one run and not on the next";
  }
  WARN(summary);

  const std::string everything = env_or("RELIB_BYTE_FLIP_LOG", "");  // every mutant's outcome, for exploring
  if (!everything.empty()) {
    std::ofstream log(everything);
    log << summary << "\n";
    for (const mutant& m : mutants) {
      const outcome& result = outcomes[m.index];
      log << mutant_file_name(m) << ": " << m.area->name << ": " << describe_flips(m) << ": "
          << (result.crashed() ? "CRASH " + result.how() : result.last_step()) << "\n";
    }
  }

  if (crashes.empty()) return;
  const std::string keep = env_or("RELIB_BYTE_FLIP_CRASH_DIR", RELIB_BYTE_FLIP_CRASH_DIR);
  std::filesystem::create_directories(keep);
  static const std::regex kept_name(R"((minimal|game)-[0-9]+\.so|crashes\.txt)");
  for (const auto& entry : std::filesystem::directory_iterator(keep)) {  // what an earlier run kept
    if (std::regex_match(entry.path().filename().string(), kept_name)) std::filesystem::remove(entry.path());
  }
  std::map<std::string, std::map<std::string, std::size_t>> by_field;  // single flips: field kind -> how -> count
  std::string list;
  for (const mutant* m : crashes) {
    const outcome& result = outcomes[m->index];
    std::string image = m->image->bytes;
    for (const flip& f : m->flips) image[f.offset] = static_cast<char>(f.to);
    const std::string kept = keep + "/" + mutant_file_name(*m);
    std::ofstream(kept, std::ios::binary) << image;
    const bool inside = relocations_stay_inside(*m);
    std::string line = mutant_file_name(*m) + ": " + m->area->name + ": " + describe_flips(*m) +
                       (inside ? " (still inside the module)" : "") + ": " + result.how();
    const std::string log = first_lines(result.log, 200);
    if (!log.empty()) line += ": \"" + log + "\"";
    list += line + "\n";
    if (m->flips.size() == 1) {
      ++by_field[field_kind(field_name(*m->image, m->flips[0].offset)) + (inside ? " (still inside the module)" : "")]
                [result.how(false)];
    } else {
      ++by_field["(2-3 flips)"][result.how(false)];
    }
  }
  std::ofstream(keep + "/crashes.txt") << summary << "\n" << list;
  std::string groups;
  for (const auto& [kind, hows] : by_field) {
    groups += "  " + kind + ":";
    for (const auto& [how, n] : hows) groups += " " + std::to_string(n) + " " + how + ",";
    groups.back() = '\n';
  }
  FAIL(std::to_string(crashes.size()) + " of " + std::to_string(mutants.size()) +
       " mutants crashed or hung the loading process.\nBy field (single flips; \"still inside the module\": a"
       " relocation moved to another slot or value of the module itself, which no check of the file can tell"
       " from the original):\n" + groups +
       "Each one:\n" + list + "The mutants are kept in " + keep +
       " (crashes.txt lists them); load one again in this process, under gdb, with\n  RELIB_BYTE_FLIP_DLOPEN=1 RELIB_BYTE_FLIP_FILE=" +
       keep + "/" + mutant_file_name(*crashes.front()) + " gdb -batch -ex run -ex bt --args " + this_executable() +
       " \"byte flip: load one file in this process\"\n(without RELIB_BYTE_FLIP_DLOPEN=1, through relib, but not under gdb).");
}

// Loads RELIB_BYTE_FLIP_FILE with relib, or with RELIB_BYTE_FLIP_DLOPEN=1 with dlopen() and its
// path as relib would (RTLD_NOW | RTLD_LOCAL). Use the latter under gdb: relib hands the loader
// "/proc/self/fd/N", and gdb, reading the new library's name, opens that path in its own process,
// where descriptor N is one of its pipes, and waits on it forever.
TEST_CASE(load_one_file, "[.][byte-flip]") {
  const std::string path = env_or("RELIB_BYTE_FLIP_FILE", "");
  if (path.empty()) FAIL("set RELIB_BYTE_FLIP_FILE to a mutant kept by the byte flip test");
  const std::string report_fd = env_or("RELIB_BYTE_FLIP_REPORT_FD", "");
  if (!report_fd.empty()) load_reporting_crashes(path, std::atoi(report_fd.c_str()));  // started by the test above
  if (env_or("RELIB_BYTE_FLIP_DLOPEN", "0") != "0") {
    void* library = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    INFO((library ? std::string("loaded") : std::string(::dlerror())));
    CHECK(library != nullptr);
    if (library) ::dlclose(library);
    return;
  }
  load_and_unload(interface_of_file(path), path, STDOUT_FILENO);
}
