#include <gtest/gtest.h>

#include <fstream>

#include "psm/io/file_bytes.h"
#include "psm/io/npy.h"
#include "test_util.h"

namespace {

using psm::test::data_path;

torch::Tensor f8_2x3() { return (0.5 * torch::arange(6, torch::kFloat64) - 1.0).reshape({2, 3}); }

// The arrays make_npy_fixtures.py writes, rebuilt from the same closed forms.
struct Fixture {
  std::string file;
  torch::Tensor expected;
};
std::vector<Fixture> fixtures() {
  return {
      {"f8_2x3.npy", f8_2x3()},
      {"f4_5.npy", 0.25 * torch::arange(5, torch::kFloat32) - 0.5},
      {"i4_3x2.npy", (torch::arange(6, torch::kInt32) - 3).reshape({3, 2})},
      {"i8_2x2x2.npy", (torch::arange(8, torch::kInt64) * 1000000007 - 4).reshape({2, 2, 2})},
      {"u1_4.npy", torch::tensor({0, 1, 128, 255}, torch::kUInt8)},
      {"f8_scalar.npy", torch::tensor(-2.5, torch::kFloat64)},
      {"f8_0x3.npy", torch::zeros({0, 3}, torch::kFloat64)},
      {"f8_empty_14d.npy",
       torch::zeros({1, 0, 10, 10, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kFloat64)},
  };
}

TEST(Npy, ReadsEachDtypeWithKnownValues) {
  for (const auto& [file, expected] : fixtures()) {
    const torch::Tensor array = psm::read_npy(data_path(file));
    EXPECT_EQ(array.scalar_type(), expected.scalar_type()) << file;
    EXPECT_EQ(array.sizes(), expected.sizes()) << file;
    EXPECT_TRUE(torch::equal(array, expected)) << file;
    EXPECT_TRUE(array.is_contiguous()) << file;
  }
}

TEST(Npy, WritesTheBytesNumpyWrites) {
  for (const auto& [file, expected] : fixtures()) {
    EXPECT_EQ(psm::npy_bytes(expected), psm::read_file_bytes(data_path(file))) << file;
  }
}

TEST(Npy, FortranOrderIsReadInCOrder) {
  const torch::Tensor array = psm::read_npy(data_path("f8_2x3_fortran.npy"));
  EXPECT_TRUE(torch::equal(array, f8_2x3()));
  EXPECT_EQ(psm::npy_bytes(array), psm::read_file_bytes(data_path("f8_2x3.npy")));
}

TEST(Npy, NonContiguousTensorsAreWrittenInCOrder) {
  const torch::Tensor transposed = f8_2x3().t();
  EXPECT_FALSE(transposed.is_contiguous());
  EXPECT_TRUE(torch::equal(psm::parse_npy(psm::npy_bytes(transposed), "t"), transposed));
}

// Found by the npy fuzzer: no elements, but axes whose product overflows; LibTorch sizes the
// storage from every axis and threw a c10::Error past psm's error handling.
TEST(Npy, AnEmptyShapeWhoseAxesOverflowIsRefused) {
  const std::string bytes =
      psm::read_file_bytes(data_path("fuzz_regressions/npy/empty_shape_with_overflowing_axes.npy"));
  EXPECT_PSM_ERROR(psm::parse_npy(bytes, "x.npy"),
                   "x.npy: .npy shape (0, 6216942781220373619, 3) is too large");
}

TEST(Npy, RejectsUnsupportedDtypes) {
  EXPECT_PSM_ERROR(psm::read_npy(data_path("c16_2.npy")), "c16_2.npy", "unsupported dtype '<c16'");
  EXPECT_PSM_ERROR(psm::read_npy(data_path("f8_big_endian_2.npy")), "f8_big_endian_2.npy",
                   "big-endian dtype '>f8'");
  EXPECT_PSM_ERROR(psm::npy_bytes(torch::ones({2}, torch::kBool)), "cannot store dtype Bool");
}

TEST(Npy, RejectsTruncatedAndForeignBytes) {
  const std::string bytes = psm::read_file_bytes(data_path("f8_2x3.npy"));
  EXPECT_PSM_ERROR(psm::parse_npy(std::string_view(bytes).substr(0, bytes.size() - 8), "cut.npy"),
                   "cut.npy", "truncated data", "expected 48");
  EXPECT_PSM_ERROR(psm::parse_npy(std::string_view(bytes).substr(0, 40), "short.npy"), "short.npy",
                   "truncated .npy header");
  EXPECT_PSM_ERROR(psm::parse_npy("hello, world", "text.npy"), "text.npy", "not a .npy file");
  std::string bad_header = bytes;
  bad_header.replace(bad_header.find("False"), 5, "Maybe");
  EXPECT_PSM_ERROR(psm::parse_npy(bad_header, "bad.npy"), "bad.npy", "fortran_order");
}

class NpyFiles : public psm::test::ScratchDir {};

TEST_F(NpyFiles, MissingAndEmptyFilesAreNamed) {
  EXPECT_PSM_ERROR(psm::read_npy(path("absent.npy")), "absent.npy", "no such file");
  std::ofstream(path("empty.npy")).close();
  EXPECT_PSM_ERROR(psm::read_npy(path("empty.npy")), "empty.npy", "empty file");
  EXPECT_PSM_ERROR(psm::read_npz(path("empty.npy")), "empty.npy", "empty file");
  EXPECT_PSM_ERROR(psm::read_npz(path("absent.npz")), "absent.npz", "no such file");
}

TEST_F(NpyFiles, WriteNpyRoundTrips) {
  const torch::Tensor array = torch::randn({4, 5, 3}, torch::kFloat64);
  psm::write_npy(path("a.npy"), array);
  EXPECT_TRUE(torch::equal(psm::read_npy(path("a.npy")), array));
}

TEST(Npz, ReadsNumpyStoredAndDeflatedArchives) {
  for (const char* file : {"stored.npz", "deflated.npz"}) {
    const psm::NpzArchive arrays = psm::read_npz(data_path(file));
    ASSERT_EQ(arrays.size(), 2u) << file;
    EXPECT_TRUE(torch::equal(arrays.at("a"), f8_2x3())) << file;
    EXPECT_TRUE(torch::equal(arrays.at("b"), torch::tensor({1, 6, 8}, torch::kInt64))) << file;
  }
  const psm::NpzReader reader(data_path("stored.npz"));
  EXPECT_EQ(reader.keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_PSM_ERROR(reader.read("c"), "stored.npz", "missing key 'c'", "keys: a, b");
}

TEST(Npz, ReadsNumpyStrings) {
  const psm::NpzReader reader(data_path("sgdml_mini.npz"));
  EXPECT_EQ(reader.read_string("name"), "md22_buckyball_catcher");
  EXPECT_EQ(reader.read_string("theory"), "PBE+MBD");
  EXPECT_PSM_ERROR(reader.read("name"), "sgdml_mini.npz:name", "unsupported dtype '<U22'");
  EXPECT_PSM_ERROR(reader.read_string("z"), "sgdml_mini.npz:z", "expected a single string");
}

// Found by the npz fuzzer: a 539-byte file whose entry header claims 1.7 GB (and 1.85 GB stored);
// the buffer was allocated from the claim (1.9 GB resident) before the read failed.
TEST(Npz, AnEntrySizeItsCompressedBytesCannotHoldIsRefusedBeforeAllocating) {
  const auto file =
      data_path("fuzz_regressions/npz_dataset/entry_header_claims_1768387173_bytes.npz");
  const psm::NpzReader reader(file);
  EXPECT_PSM_ERROR(reader.read("z"), "npz:z: corrupt archive entry",
                   "says 1852113025 compressed bytes, more than the file's 539");
}

TEST(Npz, ADeflatedEntryClaimingMoreThanDeflateCanHoldIsRefused) {
  // deflated.npz with both entries' sizes set to 10^9 in their headers (89 and 77 bytes deflated).
  const psm::NpzReader reader(data_path("deflated_entry_claims_1e9_bytes.npz"));
  EXPECT_PSM_ERROR(reader.read("a"), "npz:a: corrupt archive entry",
                   "says 1000000000 bytes, more than its 89 deflated bytes can hold");
}

// Found by the npz fuzzer: an entry of compression method 0x18ff (none numpy writes) whose header
// claims 4.2 GB; the buffer was allocated before libzip refused the method.
TEST(Npz, AnEntryOfACompressionNumpyNeverWritesIsRefusedBeforeAllocating) {
  const psm::NpzReader reader(data_path(
      "fuzz_regressions/npz_dataset/entry_of_unknown_compression_claims_4229955800_bytes.npz"));
  EXPECT_PSM_ERROR(reader.read("name"), "npz:name: compression method 6399",
                   "is not one numpy writes (stored, deflated)");
}

TEST(Npz, CorruptMemberIsReported) {
  const psm::NpzReader reader(data_path("corrupt_member.npz"));
  EXPECT_TRUE(torch::equal(reader.read("energies"), torch::tensor({-1.0, -2.0}, torch::kFloat64)));
  EXPECT_PSM_ERROR(reader.read("coords"), "corrupt_member.npz:coords", "corrupt archive entry");
}

class NpzFiles : public psm::test::ScratchDir {};

TEST_F(NpzFiles, RoundTripsBothCompressions) {
  const psm::NpzArchive arrays = {
      {"positions", torch::randn({3, 4, 3}, torch::kFloat64)},
      {"small", torch::randn({7}, torch::kFloat32)},
      {"ints", torch::arange(-5, 5, torch::kInt32)},
      {"big_ints", torch::arange(0, 12, torch::kInt64).reshape({3, 4}) * (int64_t{1} << 40)},
      {"bytes", torch::arange(0, 256, torch::kInt64).to(torch::kUInt8)},
      {"scalar", torch::tensor(3.25, torch::kFloat64)},
  };
  for (const auto compression : {psm::NpzCompression::stored, psm::NpzCompression::deflated}) {
    psm::write_npz(path("a.npz"), arrays, compression);
    const psm::NpzArchive back = psm::read_npz(path("a.npz"));
    ASSERT_EQ(back.size(), arrays.size());
    for (const auto& [key, array] : arrays) {
      EXPECT_EQ(back.at(key).scalar_type(), array.scalar_type()) << key;
      EXPECT_TRUE(torch::equal(back.at(key), array)) << key;
    }
  }
  // Deflate must actually compress a compressible array.
  const psm::NpzArchive zeros = {{"z", torch::zeros({1000}, torch::kFloat64)}};
  psm::write_npz(path("stored.npz"), zeros, psm::NpzCompression::stored);
  psm::write_npz(path("deflated.npz"), zeros, psm::NpzCompression::deflated);
  EXPECT_GT(std::filesystem::file_size(path("stored.npz")), 8000u);
  EXPECT_LT(std::filesystem::file_size(path("deflated.npz")), 1000u);
  // An empty archive is still a valid (empty) zip file.
  psm::write_npz(path("empty.npz"), {});
  EXPECT_TRUE(psm::read_npz(path("empty.npz")).empty());
}

TEST_F(NpzFiles, TruncatedOrForeignArchivesAreRejected) {
  const std::string bytes = psm::read_file_bytes(data_path("stored.npz"));
  psm::write_file_bytes(path("cut.npz"), bytes.substr(0, bytes.size() / 2));
  EXPECT_PSM_ERROR(psm::read_npz(path("cut.npz")), "cut.npz", "cannot open as .npz");
  psm::write_file_bytes(path("text.npz"), "not a zip file at all\n");
  EXPECT_PSM_ERROR(psm::read_npz(path("text.npz")), "text.npz", "cannot open as .npz");
}

TEST_F(NpzFiles, FailedWriteLeavesNoFile) {
  const psm::NpzArchive arrays = {{"ok", torch::ones({2})},
                                  {"bad", torch::ones({2}, torch::kBool)}};
  EXPECT_PSM_ERROR(psm::write_npz(path("out.npz"), arrays), "out.npz", "'bad'", "Bool");
  EXPECT_EQ(file_count(), 0);
  EXPECT_PSM_ERROR(psm::write_npy(path("out.npy"), torch::ones({2}, torch::kComplexDouble)),
                   "out.npy", "ComplexDouble");
  EXPECT_EQ(file_count(), 0);
}

}  // namespace
