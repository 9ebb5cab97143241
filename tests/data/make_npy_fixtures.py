#!/usr/bin/env python3
"""Writes the small NumPy fixtures the io tests read (tests/data/*.npy, *.npz).

Run from anywhere with a Python that has NumPy (the files are committed, so CI does not need
NumPy):  /usr/bin/python3 tests/data/make_npy_fixtures.py
The fixtures were generated with NumPy 1.24.2; write_npy must reproduce the .npy files byte for
byte. Every value is a simple closed form, so the C++ tests recompute it instead of storing it.
"""
import os
import struct
import zipfile
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def path(name):
    return os.path.join(HERE, name)


def main():
    # One file per supported dtype, with values the tests recompute: 0.5 * i - 1, i - 3, ...
    np.save(path("f8_2x3.npy"), (0.5 * np.arange(6) - 1.0).reshape(2, 3).astype("<f8"))
    np.save(path("f4_5.npy"), (0.25 * np.arange(5) - 0.5).astype("<f4"))
    np.save(path("i4_3x2.npy"), (np.arange(6) - 3).reshape(3, 2).astype("<i4"))
    np.save(path("i8_2x2x2.npy"), (np.arange(8) * 1000000007 - 4).reshape(2, 2, 2).astype("<i8"))
    np.save(path("u1_4.npy"), np.array([0, 1, 128, 255], dtype="u1"))
    np.save(path("f8_scalar.npy"), np.array(-2.5, dtype="<f8"))
    np.save(path("f8_0x3.npy"), np.zeros((0, 3), dtype="<f8"))
    # An empty 14-d array whose unpadded header ends exactly on a 64-byte boundary: numpy then
    # pads a full 64 spaces rather than none.
    np.save(path("f8_empty_14d.npy"), np.zeros((1, 0, 10, 10) + (1,) * 10, dtype="<f8"))
    # Fortran order: the tests read it back as the C-order array 0.5 * i - 1 of shape (2, 3).
    np.save(path("f8_2x3_fortran.npy"), np.asfortranarray((0.5 * np.arange(6) - 1.0).reshape(2, 3)))
    # Unsupported dtypes: the reader must reject them with a clear message.
    np.save(path("c16_2.npy"), np.array([1 + 2j, 3 - 4j], dtype="<c16"))
    np.save(path("f8_big_endian_2.npy"), np.array([1.0, 2.0], dtype=">f8"))

    # The same two arrays as an uncompressed (np.savez) and a deflated (np.savez_compressed) archive.
    a = (0.5 * np.arange(6) - 1.0).reshape(2, 3)
    b = np.array([1, 6, 8], dtype="<i8")
    np.savez(path("stored.npz"), a=a, b=b)
    np.savez_compressed(path("deflated.npz"), a=a, b=b)

    # rMD17 layout (keys and dtypes as in the published files), 2 frames of a 3-atom "molecule"
    # with made-up values: coords[f, i, k] = f + 0.1 i + 0.01 k, forces = -coords, energies = [-1, -2].
    f, i, k = np.meshgrid(np.arange(2), np.arange(3), np.arange(3), indexing="ij")
    coords = f + 0.1 * i + 0.01 * k
    np.savez(path("rmd17_mini.npz"), nuclear_charges=np.array([8, 1, 1], dtype="u1"),
             coords=coords, energies=np.array([-1.0, -2.0]), forces=-coords,
             old_indices=np.array([10, 20], dtype="<i8"))
    # sGDML layout (MD17/MD22 files): E is [F, 1], string entries name/theory/type; a MD22 name
    # (buckyball catcher: 400 K).
    np.savez(path("sgdml_mini.npz"), z=np.array([6, 1, 1], dtype="u1"), R=coords,
             E=np.array([[-1.0], [-2.0]]), F=-coords, name=np.array("md22_buckyball_catcher"),
             theory=np.array("PBE+MBD"), type=np.array("d"))

    # An sGDML layout whose R is complex: the loader must name the entry and the dtype.
    np.savez(path("sgdml_complex_R.npz"), z=np.array([1], dtype="u1"),
             R=np.zeros((1, 1, 3), dtype="<c16"))

    # A deflated archive whose first member's compressed bytes are flipped: the CRC/zlib check
    # must catch it. (The central directory stays intact, so opening succeeds.)
    # Uses the rMD17 layout so that the dataset loader reaches the broken member.
    np.savez_compressed(path("corrupt_member.npz"), nuclear_charges=np.array([8, 1, 1], dtype="u1"),
                        coords=coords, energies=np.array([-1.0, -2.0]), forces=-coords)
    data = bytearray(open(path("corrupt_member.npz"), "rb").read())
    with zipfile.ZipFile(path("corrupt_member.npz")) as zf:
        offset = next(i.header_offset for i in zf.infolist() if i.filename == "coords.npy")
    # Local header: 30 fixed bytes, then the name and the local extra field (zip64 data here).
    name_length, extra_length = struct.unpack_from("<HH", data, offset + 26)
    start = offset + 30 + name_length + extra_length
    for j in range(start + 8, start + 16):
        data[j] ^= 0xFF
    open(path("corrupt_member.npz"), "wb").write(bytes(data))
    with zipfile.ZipFile(path("corrupt_member.npz")) as zf:
        try:
            zf.read("coords.npy")
        except (zipfile.BadZipFile, zlib.error):
            pass
        else:
            raise AssertionError("corrupt_member.npz: coords.npy still reads")


if __name__ == "__main__":
    main()
