#!/usr/bin/env python3
"""Writes the fuzz seed corpus: tests/fuzz/corpus/<target>/{ok,bad}_*.

Each reader gets a few small valid files (ok_*: the replay test requires that they parse) and
hostile ones (bad_*: the replay test requires an idem::Error): a header longer than the file,
overlapping or negative offsets, huge dimension products, wrong magic, non-numeric cells, ...
Files named regress_* are past fuzz findings (kept by hand, never regenerated): they must not
crash, and parse or throw as the replay test's table says.

The files are committed; rerun this only to change the seeds:  python3 tests/fuzz/make_corpus.py
Standard library only (struct, json, gzip), so the bytes do not depend on numpy or on idem.
"""
import gzip
import json
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- safetensors --------------------------------------------------------------------------------
def st(header, data=b"", pad=True, length=None):
    text = header if isinstance(header, str) else json.dumps(header, separators=(",", ":"))
    raw = text.encode("utf-8")
    if pad:
        raw += b" " * ((8 - len(raw) % 8) % 8)
    n = len(raw) if length is None else length
    return struct.pack("<Q", n) + raw + data


def safetensors():
    a = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    b = struct.pack("<2q", -7, 2**40)
    two = {"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
           "b": {"dtype": "I64", "shape": [2], "data_offsets": [24, 40]},
           "__metadata__": {"format": "pt", "step": "12"}}
    put("safetensors", "ok_two_tensors.safetensors", st(two, a + b))
    put("safetensors", "ok_scalar_and_empty.safetensors",
        st({"s": {"dtype": "F64", "shape": [], "data_offsets": [0, 8]},
            "e": {"dtype": "U8", "shape": [0, 5], "data_offsets": [8, 8]}},
           struct.pack("<d", 2.5)))
    put("safetensors", "ok_no_tensors.safetensors", st({"__metadata__": {"format": "pt"}}))
    put("safetensors", "ok_unpadded_header.safetensors",
        st({"x": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}}, b"\x01\x00\x00\x00",
           pad=False))
    # hostile
    put("safetensors", "bad_too_short.safetensors", b"\x08\x00\x00")
    put("safetensors", "bad_header_longer_than_file.safetensors", st(two, a + b, length=4096))
    put("safetensors", "bad_header_length_huge.safetensors", st(two, a + b, length=2**63 + 5))
    put("safetensors", "bad_wrong_magic.safetensors", b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    put("safetensors", "bad_not_an_object.safetensors", st("[1, 2, 3]"))
    put("safetensors", "bad_truncated_json.safetensors", st('{"a": {"dtype": "F32", "sha'))
    put("safetensors", "bad_overlapping_offsets.safetensors",
        st({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, b"\0" * 24))
    put("safetensors", "bad_negative_offset.safetensors",
        st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}}, b"\0" * 8))
    put("safetensors", "bad_end_before_begin.safetensors",
        st({"a": {"dtype": "U8", "shape": [0], "data_offsets": [8, 0]}}, b"\0" * 8))
    put("safetensors", "bad_gap.safetensors",
        st({"a": {"dtype": "U8", "shape": [4], "data_offsets": [4, 8]}}, b"\0" * 8))
    put("safetensors", "bad_huge_dims.safetensors",
        st({"a": {"dtype": "F32", "shape": [2**31, 2**31, 2**31], "data_offsets": [0, 8]}},
           b"\0" * 8))
    put("safetensors", "bad_dims_product_wraps.safetensors",
        st({"a": {"dtype": "F64", "shape": [2**62, 4], "data_offsets": [0, 0]}}))
    put("safetensors", "bad_negative_dim.safetensors",
        st({"a": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 8]}}, b"\0" * 8))
    put("safetensors", "bad_float_offset.safetensors",
        st({"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2.5]}}, b"\0\0"))
    put("safetensors", "bad_unsupported_dtype.safetensors",
        st({"a": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4))
    put("safetensors", "bad_data_truncated.safetensors", st(two, (a + b)[:30]))
    put("safetensors", "bad_trailing_bytes.safetensors", st(two, a + b + b"junk"))
    put("safetensors", "bad_duplicate_name.safetensors",
        st('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
           '"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"\1\2"))
    put("safetensors", "bad_metadata_not_strings.safetensors",
        st({"__metadata__": {"step": 12}}))


# ---- npy ----------------------------------------------------------------------------------------
def npy(header, data=b"", major=1, length=None, magic=b"\x93NUMPY", minor=0):
    pre = len(magic) + 2 + (2 if major == 1 else 4)
    h = header.encode("latin-1")
    total = pre + len(h) + 1
    h += b" " * ((64 - total % 64) % 64) + b"\n"
    n = len(h) if length is None else length
    ln = struct.pack("<H", n) if major == 1 else struct.pack("<I", n)
    return magic + bytes([major, minor]) + ln + h + data


def npy_files():
    f32 = struct.pack("<6f", 1, 2, 3, 4, 5, 6)
    put("npy", "ok_f32_2x3.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32))
    put("npy", "ok_u8_1d.npy", npy("{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }", b"\1\2\3\4\5"))
    put("npy", "ok_i64_scalar.npy", npy("{'descr': '<i8', 'fortran_order': False, 'shape': (), }",
                                        struct.pack("<q", -3)))
    put("npy", "ok_v2_f64.npy", npy("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                    struct.pack("<2d", 0.5, -1), major=2))
    put("npy", "ok_empty_0x3.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (0, 3), }"))
    put("npy", "ok_python2_long.npy", npy("{'descr': '<i4', 'fortran_order': False, 'shape': (1L,), }",
                                          b"\7\0\0\0"))
    # hostile
    put("npy", "bad_wrong_magic.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                          b"\0" * 4, magic=b"\x93NUMPZ"))
    put("npy", "bad_version_9.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                        b"\0" * 4, major=9))
    put("npy", "bad_header_longer_than_file.npy",
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4, length=60000))
    put("npy", "bad_header_length_huge_v2.npy",
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", b"\0" * 4, major=2,
            length=0xFFFFFFF0))
    put("npy", "bad_too_short.npy", b"\x93NUMPY\x01")
    put("npy", "bad_fortran_order.npy",
        npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", f32))
    put("npy", "bad_big_endian.npy", npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", f32))
    put("npy", "bad_structured_dtype.npy",
        npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", b"\0" * 4))
    put("npy", "bad_negative_dim.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2, 3), }", f32))
    put("npy", "bad_huge_dims.npy",
        npy("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 8), }", f32))
    put("npy", "bad_dim_overflows_int64.npy",
        npy("{'descr': '<u1', 'fortran_order': False, 'shape': (99999999999999999999,), }", b"\0"))
    put("npy", "bad_data_truncated.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32[:10]))
    put("npy", "bad_trailing_data.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f32 + b"xx"))
    put("npy", "bad_shape_not_tuple.npy", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (6), }", f32))
    put("npy", "bad_unknown_key.npy",
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'extra': 1, }", f32))
    put("npy", "bad_missing_key.npy", npy("{'descr': '<f4', 'shape': (6,), }", f32))
    put("npy", "bad_unterminated_string.npy", npy("{'descr': '<f4", f32))
    put("npy", "bad_non_ascii_header.npy",
        npy("{'descr': '<f4', 'fortran_order': False, 'shape': (6,), }\xe9", f32))


# ---- json ---------------------------------------------------------------------------------------
def json_files():
    put("json", "ok_config.json", json.dumps({
        "task": "airfoil", "model": {"kind": "mlp", "hidden": [64, 64], "act": "relu"},
        "train": {"lr": 1e-3, "epochs": 30, "p_y": 0.5, "seed": 7, "amp": False, "note": None},
        "adapt": {"steps": 3, "distance": "l1", "params": "norm"},
        "text": "caf\u00e9 \u2603 \U0001F600 \"quoted\" back\\slash \t tab"}, indent=2, ensure_ascii=False))
    put("json", "ok_numbers.json",
        "[0, -0, 1, -1, 9223372036854775807, -9223372036854775808, 9223372036854775808, "
        "1.5e308, 4.9e-324, 1e-400, 2.5E+3, 0.1, 123456789012345678901234567890]")
    put("json", "ok_escapes.json", '"\\u0041\\u00e9\\ud83d\\ude00\\n\\r\\t\\b\\f\\/\\\\\\""')
    put("json", "ok_deep_200.json", "[" * 200 + "]" * 200)
    put("json", "ok_empty_containers.json", ' {"a": [], "b": {}, "c": [[], {}]} ')
    put("json", "ok_scalar.json", "true")
    # hostile
    put("json", "bad_empty.json", "")
    put("json", "bad_trailing_comma.json", '{"a": 1,}')
    put("json", "bad_nan.json", '{"lr": NaN}')
    put("json", "bad_infinity.json", "[Infinity]")
    put("json", "bad_leading_zero.json", "[012]")
    put("json", "bad_plus_sign.json", "[+1]")
    put("json", "bad_number_overflow.json", "[1e400]")
    put("json", "bad_deep_10000.json", "[" * 10000 + "]" * 10000)
    put("json", "bad_lone_surrogate.json", '"\\ud800"')
    put("json", "bad_control_char.json", '"a\x01b"')
    put("json", "bad_invalid_utf8.json", b'"\xc3\x28"')
    put("json", "bad_overlong_utf8.json", b'"\xc0\xaf"')
    put("json", "bad_duplicate_key.json", '{"a": 1, "a": 2}')
    put("json", "bad_comment.json", '{"a": 1 // one\n}')
    put("json", "bad_bom.json", b"\xef\xbb\xbf{}")
    put("json", "bad_unterminated.json", '{"a": "b')
    put("json", "bad_two_values.json", "{} {}")
    put("json", "bad_single_quotes.json", "{'a': 1}")


# ---- idx ----------------------------------------------------------------------------------------
def idx(code, dims, data):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + data


def idx_files():
    u8 = bytes(range(24))
    put("idx", "ok_u8_2x3x4.idx", idx(0x08, [2, 3, 4], u8))
    put("idx", "ok_i8_4.idx", idx(0x09, [4], b"\x80\xff\x00\x7f"))
    put("idx", "ok_i16_3.idx", idx(0x0B, [3], struct.pack(">3h", -2, 0, 300)))
    put("idx", "ok_i32_2.idx", idx(0x0C, [2], struct.pack(">2i", -5, 2**31 - 1)))
    put("idx", "ok_f32_2x2.idx", idx(0x0D, [2, 2], struct.pack(">4f", 1.5, -2, 0, 3e38)))
    put("idx", "ok_f64_1.idx", idx(0x0E, [1], struct.pack(">d", -0.25)))
    put("idx", "ok_empty_0x5.idx", idx(0x08, [0, 5], b""))
    put("idx", "ok_gzip_u8.idx.gz", gzip.compress(idx(0x08, [2, 3, 4], u8), mtime=0))
    raw = idx(0x0D, [2, 2], struct.pack(">4f", 1, 2, 3, 4))
    put("idx", "ok_gzip_two_members.idx.gz",
        gzip.compress(raw[:9], mtime=0) + gzip.compress(raw[9:], mtime=0))
    # hostile
    put("idx", "bad_empty.idx", b"")
    put("idx", "bad_wrong_magic.idx", b"\x01\x00\x08\x01\x00\x00\x00\x01\x05")
    put("idx", "bad_unknown_type.idx", idx(0x07, [1], b"\x00"))
    put("idx", "bad_ndim_zero.idx", bytes([0, 0, 8, 0]))
    put("idx", "bad_ndim_nine.idx", idx(0x08, [1] * 9, b"\x00"))
    put("idx", "bad_header_truncated.idx", idx(0x08, [2, 3, 4], b"")[:9])
    put("idx", "bad_huge_dims.idx", idx(0x0E, [0xFFFFFFFF] * 4, b"\0" * 8))
    put("idx", "bad_data_truncated.idx", idx(0x08, [2, 3, 4], u8[:20]))
    put("idx", "bad_trailing_data.idx", idx(0x08, [2, 3, 4], u8 + b"\0"))
    put("idx", "bad_over_limit.idx", idx(0x08, [65536, 65536], b"\0" * 16))
    good_gz = gzip.compress(idx(0x08, [2, 3, 4], u8), mtime=0)
    put("idx", "bad_gzip_truncated.idx.gz", good_gz[:-10])
    corrupt = bytearray(good_gz)
    corrupt[-8] ^= 0xFF  # the CRC32
    put("idx", "bad_gzip_crc.idx.gz", bytes(corrupt))
    put("idx", "bad_gzip_garbage.idx.gz", b"\x1f\x8b\x08\x00" + b"\xff" * 40)
    put("idx", "bad_gzip_wrong_size.idx.gz", gzip.compress(idx(0x08, [2, 3, 4], u8[:23]), mtime=0))
    # A small gzip stream whose header promises 2^31 + bytes: must fail without allocating it all.
    put("idx", "bad_gzip_bomb_header.idx.gz",
        gzip.compress(idx(0x08, [65536, 32768], b"\0" * 65536), mtime=0))


# ---- tables -------------------------------------------------------------------------------------
def table_files():
    put("table", "ok_header.csv", "x1,x2,y\n0.5,1,2\n-1e-3,+4,5.25\n")
    put("table", "ok_no_header.tsv", "1\t2\t3\n4\t5\t6\n")
    put("table", "ok_whitespace.dat", "# airfoil self-noise\n800 0 0.3048 71.3 0.00266337 126.201\n"
                                      "  1000   0   0.3048  71.3   0.00266337  125.201  \n\n")
    put("table", "ok_semicolon_quoted.csv", '"a";"b"\n"1";" 2 "\n')
    put("table", "ok_bom_crlf_comments.csv", "\ufeff# c\r\nh1,h2\r\n\r\n1,2\r\n# mid\r\n3,4\r\n")
    put("table", "ok_no_final_newline.csv", "1,2\n3,4")
    # hostile
    put("table", "bad_empty.csv", "")
    put("table", "bad_only_comments.csv", "# nothing\n\n# here\n")
    put("table", "bad_header_only.csv", "a,b,c\n")
    put("table", "bad_non_numeric_cell.csv", "a,b\n1,2\n3,x\n")
    put("table", "bad_ragged_rows.csv", "1,2,3\n4,5\n")
    put("table", "bad_empty_cell.csv", "1,,3\n")
    put("table", "bad_nan_cell.csv", "a,b\n1,nan\n")
    put("table", "bad_inf_cell.tsv", "1\tinf\n")
    put("table", "bad_out_of_range.csv", "1e999,2\n")
    put("table", "bad_double_sign.csv", "+-1,2\n")
    put("table", "bad_hex_cell.csv", "0x10,2\n")
    put("table", "bad_binary.dat", b"\x00\x01\x02\xff\xfe\n\x00")


if __name__ == "__main__":
    safetensors()
    npy_files()
    json_files()
    idx_files()
    table_files()
    for t in sorted(os.listdir(ROOT)):
        print(t, len(os.listdir(os.path.join(ROOT, t))), "files")
