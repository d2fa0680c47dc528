// safetensors read/write. Format and guarantees: io/safetensors.h.
#include "io/safetensors.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_set>

#include "io/file.h"
#include "io/json.h"

namespace idem {

// ---------------------------------------------------------------------------------------------
// dtypes

namespace {

const char* st_dtype_name(DType t) {
  switch (t) {
    case DType::f32:
      return "F32";
    case DType::f64:
      return "F64";
    case DType::i32:
      return "I32";
    case DType::i64:
      return "I64";
    case DType::u8:
      return "U8";
  }
  return "?";
}

bool st_dtype_parse(const std::string& s, DType& out) {
  static const std::pair<const char*, DType> known[] = {{"F32", DType::f32},
                                                        {"F64", DType::f64},
                                                        {"I32", DType::i32},
                                                        {"I64", DType::i64},
                                                        {"U8", DType::u8}};
  for (const auto& k : known)
    if (s == k.first) {
      out = k.second;
      return true;
    }
  return false;
}

// Valid safetensors dtypes that idem has no tensor type for.
bool st_dtype_foreign(const std::string& s) {
  static const char* other[] = {"BOOL",    "I8",  "U16",     "I16",         "F16",        "BF16",
                                "U32",     "U64", "F8_E4M3", "F8_E5M2",     "F8_E8M0",    "F6_E2M3",
                                "F6_E3M2", "F4",  "C64",     "F8_E4M3FNUZ", "F8_E5M2FNUZ"};
  for (const char* o : other)
    if (s == o) return true;
  return false;
}

// ---------------------------------------------------------------------------------------------
// Header validation

struct Entry {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

struct Header {
  std::vector<Entry> entries;  // sorted by data offsets
  StringPairs metadata;
};

// Throws "[safetensors] <path>: <problem>".
template <typename... P>
[[noreturn]] void bad(const std::string& path, const P&... parts) {
  fail("safetensors", path, ": ", parts...);
}

uint64_t non_negative_int(const json::Value& v, const std::string& path, const std::string& name,
                          const char* what) {
  if (!v.is_number())
    bad(path, "tensor ", json::quote(name), ": ", what, " must be an integer, got ", v.type_name());
  if (!v.is_integer()) {
    if (v.as_double() < 0)
      bad(path, "tensor ", json::quote(name), ": ", what, " must be >= 0, got ", v.as_double());
    if (v.as_double() > 0 && v.as_double() == std::floor(v.as_double()))
      bad(path, "tensor ", json::quote(name), ": ", what, " ", v.as_double(),
          " is too large (limit 2^63-1)");
    bad(path, "tensor ", json::quote(name), ": ", what, " must be an integer, got ", v.as_double());
  }
  if (v.as_int() < 0)
    bad(path, "tensor ", json::quote(name), ": ", what, " must be >= 0, got ", v.as_int());
  return static_cast<uint64_t>(v.as_int());
}

Header parse_header(const std::string& text, uint64_t data_size, const std::string& path) {
  if (text.empty() || text[0] != '{')
    bad(path, "the header does not start with '{' (not a safetensors file?)");
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const Error& e) {
    bad(path, "invalid JSON header: ", e.what());
  }
  if (!root.is_object()) bad(path, "the header is a JSON ", root.type_name(), ", not an object");

  Header h;
  for (const auto& [name, info] : root.as_object()) {
    if (name == "__metadata__") {
      if (!info.is_object())
        bad(path, "__metadata__ must be an object of strings, got ", info.type_name());
      for (const auto& [k, v] : info.as_object()) {
        if (!v.is_string())
          bad(path, "__metadata__ entry ", json::quote(k), " must be a string, got ",
              v.type_name());
        h.metadata.emplace_back(k, v.as_string());
      }
      continue;
    }
    // The writer refuses an empty name (a tensor needs a key to be found by), so the reader
    // does too: a file that names a tensor "" was not written by a safetensors writer.
    if (name.empty()) bad(path, "a tensor has an empty name");
    const std::string qn = json::quote(name);
    if (!info.is_object()) bad(path, "tensor ", qn, ": expected an object, got ", info.type_name());
    const json::Value* dt = info.find("dtype");
    const json::Value* sh = info.find("shape");
    const json::Value* off = info.find("data_offsets");
    if (!dt || !sh || !off)
      bad(path, "tensor ", qn, ": missing \"",
          !dt   ? "dtype"
          : !sh ? "shape"
                : "data_offsets",
          "\"");
    if (!dt->is_string())
      bad(path, "tensor ", qn, ": dtype must be a string, got ", dt->type_name());
    Entry e;
    e.name = name;
    if (!st_dtype_parse(dt->as_string(), e.dtype)) {
      if (st_dtype_foreign(dt->as_string()))
        bad(path, "tensor ", qn, ": dtype ", dt->as_string(),
            " is not supported by idem (supported: F32, F64, I32, I64, U8)");
      bad(path, "tensor ", qn, ": unknown dtype ", json::quote(dt->as_string()));
    }
    if (!sh->is_array())
      bad(path, "tensor ", qn, ": shape must be an array, got ", sh->type_name());
    // numel with overflow checks: no product may exceed what the data section could hold.
    uint64_t numel = 1;
    bool overflow = false;
    for (const json::Value& d : sh->as_array()) {
      const uint64_t n = non_negative_int(d, path, name, "shape entry");
      e.shape.push_back(static_cast<int64_t>(n));
      if (n != 0 && numel > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / n)
        overflow = true;
      else
        numel *= n;
    }
    // A zero extent makes the product 0 whatever overflowed before it.
    if (std::find(e.shape.begin(), e.shape.end(), 0) != e.shape.end()) {
      numel = 0;
      overflow = false;
    }
    if (overflow) bad(path, "tensor ", qn, ": shape ", shape_str(e.shape), " overflows 64 bits");
    if (!off->is_array() || off->as_array().size() != 2)
      bad(path, "tensor ", qn, ": data_offsets must be an array [begin, end]");
    e.begin = non_negative_int(off->as_array()[0], path, name, "data_offsets begin");
    e.end = non_negative_int(off->as_array()[1], path, name, "data_offsets end");
    if (e.end < e.begin)
      bad(path, "tensor ", qn, ": data_offsets [", e.begin, ", ", e.end, "] end before begin");
    const uint64_t es = dtype_size(e.dtype);
    if (numel > std::numeric_limits<uint64_t>::max() / es)
      bad(path, "tensor ", qn, ": shape ", shape_str(e.shape), " overflows 64 bits");
    if (numel * es != e.end - e.begin)
      bad(path, "tensor ", qn, ": ", dt->as_string(), " ", shape_str(e.shape), " needs ",
          numel * es, " bytes but data_offsets [", e.begin, ", ", e.end, "] hold ",
          e.end - e.begin);
    h.entries.push_back(std::move(e));
  }

  // The tensors must tile the data section exactly: sorted by offset, each starts where the
  // previous one ended, the first at 0 and the last at the end of the file.
  std::stable_sort(h.entries.begin(), h.entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const Entry* prev = nullptr;
  for (const Entry& e : h.entries) {
    if (e.begin < expected)
      bad(path, "tensor ", json::quote(e.name), " at [", e.begin, ", ", e.end, "] overlaps tensor ",
          json::quote(prev->name), " at [", prev->begin, ", ", prev->end, "]");
    if (e.begin > expected)
      bad(path, "gap of ", e.begin - expected, " bytes in the data before tensor ",
          json::quote(e.name), " at [", e.begin, ", ", e.end, "] (offsets must be contiguous)");
    expected = e.end;
    prev = &e;
  }
  if (expected > data_size)
    bad(path, "the tensors need ", expected, " bytes of data but the file holds only ", data_size,
        " after the header (truncated file?)");
  if (expected < data_size)
    bad(path, data_size - expected, " bytes after the last tensor are not described by the header");
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Write

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const StringPairs& metadata) {
  const char* op = "safetensors";
  check_little_endian(op);
  std::unordered_set<std::string> names;
  json::Value header = json::Value::object();
  json::Value::Object& members = header.as_object();
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    IDEM_CHECK(!name.empty(), op, path, ": tensor ", i, " has an empty name");
    IDEM_CHECK(name != "__metadata__", op, path, ": \"__metadata__\" cannot name a tensor");
    IDEM_CHECK(names.insert(name).second, op, path, ": duplicate tensor name ", json::quote(name));
    IDEM_CHECK(t.defined(), op, path, ": tensor ", json::quote(name), " is undefined");
    json::Value shape = json::Value::array();
    for (int64_t d : t.shape()) shape.push_back(json::Value(d));
    const uint64_t end = offset + t.nbytes();
    json::Value info = json::Value::object();
    info.set("dtype", json::Value(st_dtype_name(t.dtype())));
    info.set("shape", std::move(shape));
    info.set("data_offsets", json::Value::array({json::Value(static_cast<int64_t>(offset)),
                                                 json::Value(static_cast<int64_t>(end))}));
    members.emplace_back(name, std::move(info));
    offset = end;
  }
  json::Value meta = json::Value::object();
  bool has_format = false;
  for (const auto& kv : metadata) has_format = has_format || kv.first == "format";
  if (!has_format) meta.set("format", json::Value("pt"));
  for (const auto& [k, v] : metadata) {
    IDEM_CHECK(!meta.find(k), op, path, ": duplicate metadata key ", json::quote(k));
    meta.set(k, json::Value(v));
  }
  members.emplace_back("__metadata__", std::move(meta));

  std::string text = json::dump(header);
  text.append((8 - text.size() % 8) % 8, ' ');
  IDEM_CHECK(text.size() <= kSafetensorsMaxHeader, op, path, ": the header would be ", text.size(),
             " bytes, over the ", kSafetensorsMaxHeader, "-byte limit");

  write_file_atomic(path, op, [&](const ByteSink& sink) {
    unsigned char len[8];
    uint64_t n = text.size();
    for (int k = 0; k < 8; ++k) len[k] = static_cast<unsigned char>(n >> (8 * k));
    sink(len, 8);
    sink(text.data(), text.size());
    for (const auto& [name, t] : tensors) {
      if (t.numel() == 0) continue;
      const Tensor h = t.device().is_cpu() ? t : t.to(Device::cpu());
      sink(h.raw_data(), h.nbytes());
    }
  });
}

// ---------------------------------------------------------------------------------------------
// Read

SafetensorsContents read_safetensors(const std::string& path, Device device) {
  check_little_endian("safetensors");
  InputFile f(path, "safetensors");
  const uint64_t size = f.size();
  if (size < 8) bad(path, "file is ", size, " bytes, too short for the 8-byte header length");

  unsigned char len[8];
  f.read_exact(len, 8, "the header length");
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = (n << 8) | len[k];
  if (n > kSafetensorsMaxHeader)
    bad(path, "header length ", n, " exceeds the ", kSafetensorsMaxHeader, "-byte limit");
  if (n > size - 8)
    bad(path, "header length ", n, " exceeds the ", size - 8,
        " bytes that follow it in the file (truncated or not a safetensors file)");
  std::string text(n, '\0');
  f.read_exact(text.data(), n, "the header");
  const Header h = parse_header(text, size - 8 - n, path);

  SafetensorsContents out;
  out.metadata = h.metadata;
  out.tensors.reserve(h.entries.size());
  for (const Entry& e : h.entries) {
    Tensor t = empty(e.shape, {e.dtype});
    f.read_exact(t.raw_data(), e.end - e.begin, ("tensor " + json::quote(e.name)).c_str());
    out.tensors.emplace_back(e.name, device.is_cpu() ? t : t.to(device));
  }
  return out;
}

NamedTensors load_safetensors(const std::string& path, Device device) {
  return read_safetensors(path, device).tensors;
}

}  // namespace idem
