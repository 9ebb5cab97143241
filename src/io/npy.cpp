#include "psm/io/npy.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <zip.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <optional>

#include "psm/core/atomic_file.h"
#include "psm/core/error.h"
#include "psm/core/memory.h"
#include "psm/io/file_bytes.h"

namespace psm {

static_assert(std::endian::native == std::endian::little,
              "the .npy reader and writer assume a little-endian host");

namespace {

constexpr std::string_view npy_magic = "\x93NUMPY";
constexpr size_t npy_alignment = 64;           // numpy's ARRAY_ALIGN
constexpr size_t npy_growth_axis_digits = 21;  // numpy's GROWTH_AXIS_MAX_DIGITS (numpy >= 1.23)

struct DtypeInfo {
  std::string_view descr;  ///< as numpy writes it
  torch::Dtype dtype;
  size_t itemsize;
};

constexpr DtypeInfo supported_dtypes[] = {
    {"<f4", torch::kFloat32, 4}, {"<f8", torch::kFloat64, 8}, {"<i4", torch::kInt32, 4},
    {"<i8", torch::kInt64, 8},   {"|u1", torch::kUInt8, 1},
};

std::string supported_descr_list() {
  std::vector<std::string_view> names;
  for (const auto& info : supported_dtypes) names.push_back(info.descr);
  return fmt::format("{}", fmt::join(names, ", "));
}

std::optional<DtypeInfo> dtype_from_descr(std::string_view descr) {
  // Single-byte types have no byte order; numpy writes '|u1' but accepts '<u1' and '=u1'.
  if (descr == "<u1" || descr == "=u1") descr = "|u1";
  for (const auto& info : supported_dtypes) {
    if (info.descr == descr) return info;
  }
  return std::nullopt;
}

DtypeInfo dtype_info(torch::Dtype dtype) {
  for (const auto& info : supported_dtypes) {
    if (info.dtype == dtype) return info;
  }
  throw Error(
      fmt::format("cannot store dtype {} in .npy (supported: float32, float64, int32, "
                  "int64, uint8)",
                  c10::toString(dtype)));
}

/// Python's repr of a tuple of ints: "()", "(5,)", "(2, 3)".
std::string python_tuple(const std::vector<int64_t>& values) {
  if (values.size() == 1) return fmt::format("({},)", values[0]);
  return fmt::format("({})", fmt::join(values, ", "));
}

/// The header fields of a .npy file and where its data starts.
struct NpyHeader {
  std::string descr;
  bool fortran_order = false;
  std::vector<int64_t> shape;
  size_t data_offset = 0;
};

/// Parses the Python dict literal of a .npy header, e.g.
/// {'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }
class HeaderDictParser {
 public:
  HeaderDictParser(std::string_view text, const std::string& source)
      : text_(text), source_(source) {}

  NpyHeader parse() {
    NpyHeader header;
    bool has_descr = false, has_order = false, has_shape = false;
    expect('{');
    while (true) {
      skip_space();
      if (peek() == '}') break;
      const std::string key = parse_string();
      expect(':');
      skip_space();
      if (key == "descr") {
        if (peek() == '[') fail("structured dtypes are not supported");
        header.descr = parse_string();
        has_descr = true;
      } else if (key == "fortran_order") {
        header.fortran_order = parse_bool();
        has_order = true;
      } else if (key == "shape") {
        header.shape = parse_tuple();
        has_shape = true;
      } else {
        fail(fmt::format("unexpected header key '{}'", key));
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != '}') {
        fail("expected ',' or '}' in header");
      }
    }
    check(has_descr && has_order && has_shape,
          fmt::format("{}: .npy header lacks one of 'descr', 'fortran_order', 'shape'", source_));
    return header;
  }

 private:
  [[noreturn]] void fail(const std::string& problem) const {
    throw Error(fmt::format("{}: {} (header: {})", source_, problem, text_));
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t')) ++pos_;
  }
  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  void expect(char c) {
    skip_space();
    if (peek() != c) fail(fmt::format("expected '{}' in .npy header", c));
    ++pos_;
  }
  std::string parse_string() {
    const char quote = peek();
    if (quote != '\'' && quote != '"') fail("expected a quoted string in .npy header");
    const size_t end = text_.find(quote, pos_ + 1);
    if (end == std::string_view::npos) fail("unterminated string in .npy header");
    std::string value(text_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return value;
  }
  bool parse_bool() {
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    fail("expected True or False for 'fortran_order'");
  }
  std::vector<int64_t> parse_tuple() {
    expect('(');
    std::vector<int64_t> values;
    while (true) {
      skip_space();
      if (peek() == ')') break;
      int64_t value = 0;
      const size_t start = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        check(value <= (std::numeric_limits<int64_t>::max() - 9) / 10,
              fmt::format("{}: .npy shape too large", source_));
        value = 10 * value + (text_[pos_++] - '0');
      }
      if (pos_ == start) fail("expected a non-negative integer in 'shape'");
      if (peek() == 'L') ++pos_;  // Python 2 long literal
      values.push_back(value);
      skip_space();
      if (peek() == ',') {
        ++pos_;
      } else if (peek() != ')') {
        fail("expected ',' or ')' in 'shape'");
      }
    }
    ++pos_;
    return values;
  }

  std::string_view text_;
  const std::string& source_;
  size_t pos_ = 0;
};

uint32_t read_little_endian(std::string_view bytes, size_t offset, size_t width) {
  uint32_t value = 0;
  for (size_t i = 0; i < width; ++i) {
    value |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[offset + i])) << (8 * i);
  }
  return value;
}

NpyHeader parse_header(std::string_view bytes, const std::string& source) {
  check(bytes.size() >= 10 && bytes.substr(0, 6) == npy_magic,
        fmt::format("{}: not a .npy file (no \\x93NUMPY magic)", source));
  const int major = static_cast<unsigned char>(bytes[6]);
  check(major >= 1 && major <= 3, fmt::format("{}: unsupported .npy format version {}.{}", source,
                                              major, static_cast<unsigned char>(bytes[7])));
  // Version 1.0 stores the header length in 2 bytes, versions 2.0 and 3.0 in 4.
  const size_t length_width = major == 1 ? 2 : 4;
  check(bytes.size() >= 6 + 2 + length_width, fmt::format("{}: truncated .npy header", source));
  const size_t header_length = read_little_endian(bytes, 8, length_width);
  const size_t header_start = 8 + length_width;
  check(bytes.size() >= header_start + header_length,
        fmt::format("{}: truncated .npy header ({} of {} bytes)", source,
                    bytes.size() - header_start, header_length));
  std::string_view text = bytes.substr(header_start, header_length);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  NpyHeader header = HeaderDictParser(text, source).parse();
  header.data_offset = header_start + header_length;
  return header;
}

/// Number of elements in `shape`. Throws psm::Error when the shape's bytes at `itemsize` bytes an
/// element overflow int64, counting the nonzero axes alone: LibTorch sizes an empty array's
/// storage from every axis too, and fails on the overflow.
int64_t element_count(const std::vector<int64_t>& shape, int64_t itemsize,
                      const std::string& source) {
  int64_t bytes = itemsize;
  for (const int64_t size : shape) {
    check(size == 0 || bytes <= std::numeric_limits<int64_t>::max() / size,
          fmt::format("{}: .npy shape {} is too large", source, python_tuple(shape)));
    bytes *= std::max<int64_t>(size, 1);
  }
  if (std::ranges::find(shape, 0) != shape.end()) return 0;
  return bytes / itemsize;
}

/// Appends the UTF-8 encoding of one Unicode code point.
void append_utf8(std::string& out, uint32_t code_point, const std::string& source) {
  check(code_point <= 0x10FFFF && (code_point < 0xD800 || code_point > 0xDFFF),
        fmt::format("{}: invalid Unicode code point {:#x}", source, code_point));
  if (code_point < 0x80) {
    out += static_cast<char>(code_point);
  } else if (code_point < 0x800) {
    out += static_cast<char>(0xC0 | (code_point >> 6));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else if (code_point < 0x10000) {
    out += static_cast<char>(0xE0 | (code_point >> 12));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (code_point >> 18));
    out += static_cast<char>(0x80 | ((code_point >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((code_point >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (code_point & 0x3F));
  }
}

/// A numpy string scalar: '<U' (UTF-32LE) or '|S' (bytes), with trailing NULs removed.
std::string parse_npy_string(std::string_view bytes, const std::string& source) {
  const NpyHeader header = parse_header(bytes, source);
  check(element_count(header.shape, 1, source) == 1,
        fmt::format("{}: expected a single string, got shape {}", source,
                    python_tuple(header.shape)));
  const std::string_view descr = header.descr;
  const bool unicode = descr.starts_with("<U") || descr.starts_with("|U");
  const bool byte_string = descr.starts_with("|S");
  check(unicode || byte_string,
        fmt::format("{}: expected a string (dtype <U or |S), got '{}'", source, descr));
  size_t length = 0;
  for (const char c : descr.substr(2)) {
    check(c >= '0' && c <= '9', fmt::format("{}: bad string dtype '{}'", source, descr));
    length = 10 * length + static_cast<size_t>(c - '0');
  }
  const size_t itemsize = unicode ? 4 * length : length;
  check(bytes.size() - header.data_offset >= itemsize,
        fmt::format("{}: truncated string data", source));
  std::string out;
  if (byte_string) {
    out.assign(bytes.substr(header.data_offset, itemsize));
  } else {
    for (size_t i = 0; i < length; ++i) {
      append_utf8(out, read_little_endian(bytes, header.data_offset + 4 * i, 4), source);
    }
  }
  out.erase(std::find(out.begin(), out.end(), '\0'), out.end());
  return out;
}

[[noreturn]] void throw_zip_error(const std::string& context, int code) {
  zip_error_t error;
  zip_error_init_with_code(&error, code);
  const std::string message = zip_error_strerror(&error);
  zip_error_fini(&error);
  throw Error(fmt::format("{}: {}", context, message));
}

std::string source_in_archive(const std::filesystem::path& path, const std::string& key) {
  return fmt::format("{}:{}", path.string(), key);
}

}  // namespace

std::string npy_bytes(const torch::Tensor& array) {
  const DtypeInfo info = dtype_info(array.scalar_type());
  const torch::Tensor data = array.to(torch::kCPU).contiguous();
  const std::vector<int64_t> shape = data.sizes().vec();
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                 info.descr, python_tuple(shape));
  // numpy >= 1.23 reserves room to grow the first axis in place.
  if (!shape.empty()) {
    dict.append(npy_growth_axis_digits - std::to_string(shape[0]).size(), ' ');
  }
  // Pad with spaces and end with '\n' so that the data starts on a 64-byte boundary; numpy
  // switches to version 2.0 (4-byte length) only when the header does not fit in 2 bytes.
  const size_t unpadded = dict.size() + 1;
  size_t length_width = 2;
  size_t padding = npy_alignment - (npy_magic.size() + 2 + length_width + unpadded) % npy_alignment;
  if (unpadded + padding > std::numeric_limits<uint16_t>::max()) {
    length_width = 4;
    padding = npy_alignment - (npy_magic.size() + 2 + length_width + unpadded) % npy_alignment;
  }
  const size_t header_length = unpadded + padding;
  std::string out(npy_magic);
  out += static_cast<char>(length_width == 2 ? 1 : 2);
  out += '\0';
  for (size_t i = 0; i < length_width; ++i) {
    out += static_cast<char>((header_length >> (8 * i)) & 0xFF);
  }
  out += dict;
  out.append(padding, ' ');
  out += '\n';
  const size_t data_bytes = static_cast<size_t>(data.numel()) * info.itemsize;
  const size_t data_offset = out.size();
  out.resize(data_offset + data_bytes);
  if (data_bytes > 0) std::memcpy(out.data() + data_offset, data.data_ptr(), data_bytes);
  return out;
}

torch::Tensor parse_npy(std::string_view bytes, const std::string& source_name) {
  const NpyHeader header = parse_header(bytes, source_name);
  const auto info = dtype_from_descr(header.descr);
  if (!info) {
    check(!header.descr.starts_with(">"),
          fmt::format("{}: big-endian dtype '{}' is not supported (supported: {})", source_name,
                      header.descr, supported_descr_list()));
    throw Error(fmt::format("{}: unsupported dtype '{}' (supported: {})", source_name, header.descr,
                            supported_descr_list()));
  }
  const int64_t count =
      element_count(header.shape, static_cast<int64_t>(info->itemsize), source_name);
  const size_t data_bytes = static_cast<size_t>(count) * info->itemsize;
  const size_t available = bytes.size() - header.data_offset;
  check(available >= data_bytes,
        fmt::format("{}: truncated data: {} bytes for shape {} {}, expected {}", source_name,
                    available, python_tuple(header.shape), header.descr, data_bytes));
  // A Fortran-order array is the C-order array of the reversed shape, transposed.
  std::vector<int64_t> stored_shape = header.shape;
  if (header.fortran_order) std::reverse(stored_shape.begin(), stored_shape.end());
  torch::Tensor array = torch::empty(stored_shape, torch::TensorOptions().dtype(info->dtype));
  if (data_bytes > 0) {
    std::memcpy(array.data_ptr(), bytes.data() + header.data_offset, data_bytes);
  }
  if (header.fortran_order && array.dim() > 1) {
    std::vector<int64_t> reversed(static_cast<size_t>(array.dim()));
    for (int64_t d = 0; d < array.dim(); ++d)
      reversed[static_cast<size_t>(d)] = array.dim() - 1 - d;
    array = array.permute(reversed).contiguous();
  }
  return array;
}

torch::Tensor read_npy(const std::filesystem::path& path) {
  return parse_npy(read_file_bytes(path), path.string());
}

void write_npy(const std::filesystem::path& path, const torch::Tensor& array) {
  std::string bytes;
  try {
    bytes = npy_bytes(array);
  } catch (const Error& e) {
    throw Error(fmt::format("{}: {}", path.string(), e.what()));
  }
  write_atomically(path, [&](const std::filesystem::path& tmp) { write_file_bytes(tmp, bytes); });
}

// ---- npz -------------------------------------------------------------------------------------

struct NpzReader::Zip {
  zip_t* archive = nullptr;
  std::map<std::string, zip_uint64_t> entry_index;  ///< key -> zip entry index
  zip_uint64_t file_bytes = 0;                      ///< size of the archive file
  ~Zip() {
    if (archive != nullptr) zip_discard(archive);
  }
};

NpzReader::NpzReader(const std::filesystem::path& path) : path_(path), zip_(new Zip) {
  require_nonempty_file(path);
  int code = 0;
  zip_->archive = zip_open(path.c_str(), ZIP_RDONLY, &code);
  if (zip_->archive == nullptr) {
    throw_zip_error(fmt::format("{}: cannot open as .npz (zip) archive", path.string()), code);
  }
  zip_->file_bytes = std::filesystem::file_size(path);
  const zip_int64_t count = zip_get_num_entries(zip_->archive, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(zip_->archive, static_cast<zip_uint64_t>(i), 0);
    if (name == nullptr) continue;
    std::string key = name;
    if (!key.ends_with(".npy")) continue;
    key.resize(key.size() - 4);
    zip_->entry_index.emplace(key, static_cast<zip_uint64_t>(i));
    keys_.push_back(key);
  }
}

NpzReader::~NpzReader() = default;

bool NpzReader::contains(const std::string& key) const { return zip_->entry_index.contains(key); }

namespace {

/// The largest factor by which deflate expands (its maximum compression ratio).
constexpr double kDeflateMaxRatio = 1032;

/// Throws psm::Error when what an entry's header claims cannot be true or cannot be read: more
/// compressed bytes than the file has, more bytes than the compressed ones can hold, a
/// compression method numpy never writes, or more memory than the machine has. The buffer is
/// allocated from the claimed size, so a corrupt header must not reach the allocation.
void check_entry_claims(const zip_stat_t& stat, zip_uint64_t file_bytes,
                        const std::string& source) {
  const bool known = (stat.valid & ZIP_STAT_COMP_SIZE) && (stat.valid & ZIP_STAT_COMP_METHOD);
  check(!known || stat.comp_size <= file_bytes,
        fmt::format("{}: corrupt archive entry: its header says {} compressed bytes, more than the "
                    "file's {}",
                    source, stat.comp_size, file_bytes));
  if (known && stat.comp_method == ZIP_CM_STORE) {
    check(stat.size == stat.comp_size,
          fmt::format("{}: corrupt archive entry: {} bytes stored, but its header says {}", source,
                      stat.comp_size, stat.size));
  } else if (known && stat.comp_method == ZIP_CM_DEFLATE) {
    check(static_cast<double>(stat.size) <=
              kDeflateMaxRatio * static_cast<double>(stat.comp_size) + 1024,
          fmt::format("{}: corrupt archive entry: its header says {} bytes, more than its {} "
                      "deflated bytes can hold",
                      source, stat.size, stat.comp_size));
  } else if (known) {
    throw Error(fmt::format("{}: compression method {} is not one numpy writes (stored, deflated)",
                            source, stat.comp_method));
  }
  check_memory_fits(static_cast<double>(stat.size), source);
}

}  // namespace

std::string NpzReader::entry_bytes(const std::string& key) const {
  const std::string source = source_in_archive(path_, key);
  const auto it = zip_->entry_index.find(key);
  check(it != zip_->entry_index.end(), fmt::format("{}: missing key '{}' (keys: {})",
                                                   path_.string(), key, fmt::join(keys_, ", ")));
  zip_stat_t stat;
  zip_stat_init(&stat);
  if (zip_stat_index(zip_->archive, it->second, 0, &stat) != 0 ||
      (stat.valid & ZIP_STAT_SIZE) == 0) {
    throw Error(
        fmt::format("{}: cannot read the archive entry: {}", source, zip_strerror(zip_->archive)));
  }
  check_entry_claims(stat, zip_->file_bytes, source);
  zip_file_t* file = zip_fopen_index(zip_->archive, it->second, 0);
  if (file == nullptr) {
    throw Error(
        fmt::format("{}: cannot open the archive entry: {}", source, zip_strerror(zip_->archive)));
  }
  std::string bytes(stat.size, '\0');
  zip_uint64_t done = 0;
  std::string problem;
  while (done < stat.size) {
    const zip_int64_t n = zip_fread(file, bytes.data() + done, stat.size - done);
    if (n < 0) {
      problem = zip_file_strerror(file);
      break;
    }
    if (n == 0) {
      problem = fmt::format("entry ends after {} of {} bytes", done, stat.size);
      break;
    }
    done += static_cast<zip_uint64_t>(n);
  }
  // libzip verifies the CRC when the end of the entry is read; read once more to reach it.
  if (problem.empty()) {
    char extra = 0;
    if (zip_fread(file, &extra, 1) < 0) problem = zip_file_strerror(file);
  }
  zip_fclose(file);
  check(problem.empty(), fmt::format("{}: corrupt archive entry: {}", source, problem));
  return bytes;
}

torch::Tensor NpzReader::read(const std::string& key) const {
  return parse_npy(entry_bytes(key), source_in_archive(path_, key));
}

std::string NpzReader::read_string(const std::string& key) const {
  return parse_npy_string(entry_bytes(key), source_in_archive(path_, key));
}

NpzArchive read_npz(const std::filesystem::path& path) {
  const NpzReader reader(path);
  NpzArchive arrays;
  for (const auto& key : reader.keys()) arrays.emplace(key, reader.read(key));
  return arrays;
}

void write_npz(const std::filesystem::path& path, const NpzArchive& arrays,
               NpzCompression compression) {
  // Serialise first so that a bad array fails before any file exists.
  std::vector<std::pair<std::string, std::string>> entries;
  for (const auto& [key, array] : arrays) {
    check(!key.empty(), fmt::format("{}: an .npz key is empty", path.string()));
    try {
      entries.emplace_back(key + ".npy", npy_bytes(array));
    } catch (const Error& e) {
      throw Error(fmt::format("{}: array '{}': {}", path.string(), key, e.what()));
    }
  }
  write_atomically(path, [&](const std::filesystem::path& tmp) {
    if (entries.empty()) {
      // libzip writes no file for an empty archive; numpy writes the bare end record.
      write_file_bytes(tmp, std::string("PK\x05\x06", 4) + std::string(18, '\0'));
      return;
    }
    int code = 0;
    zip_t* archive = zip_open(tmp.c_str(), ZIP_CREATE | ZIP_TRUNCATE, &code);
    if (archive == nullptr) throw_zip_error(fmt::format("{}: cannot create", path.string()), code);
    const auto fail = [&](const std::string& what) {
      const std::string message =
          fmt::format("{}: {}: {}", path.string(), what, zip_strerror(archive));
      zip_discard(archive);
      throw Error(message);
    };
    const zip_int32_t method =
        compression == NpzCompression::deflated ? ZIP_CM_DEFLATE : ZIP_CM_STORE;
    for (const auto& [name, bytes] : entries) {
      // The buffers in `entries` outlive zip_close, so libzip need not copy them.
      zip_source_t* source = zip_source_buffer(archive, bytes.data(), bytes.size(), 0);
      if (source == nullptr) fail("cannot add " + name);
      const zip_int64_t index = zip_file_add(archive, name.c_str(), source, ZIP_FL_ENC_UTF_8);
      if (index < 0) {
        zip_source_free(source);
        fail("cannot add " + name);
      }
      if (zip_set_file_compression(archive, static_cast<zip_uint64_t>(index), method, 0) != 0) {
        fail("cannot set compression of " + name);
      }
    }
    if (zip_close(archive) != 0) fail("cannot write archive");
  });
}

}  // namespace psm
