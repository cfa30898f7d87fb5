#include "checkpoint/image/json.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include <cstdio>
#include <memory>
#include <string_view>
#include <vector>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"

namespace crshim::image {

namespace {

namespace pb = google::protobuf;

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none.
size_t utf8_len(std::string_view s, size_t i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; k++) {
    auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (cc & 0x3f);
  }
  // overlong forms, surrogates, beyond U+10FFFF
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// A JSON string; bytes that are not UTF-8 (paths need not be) become U+FFFD so the output stays JSON.
void put_string(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
      i++;
    } else if (c < 0x20) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
      i++;
    } else if (size_t n = utf8_len(s, i)) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      i++;
    }
  }
  out += '"';
}

void put_base64(std::string& out, std::string_view in) {
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  out += '"';
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int k = 3; k >= 0; k--) out += kAlphabet[(v >> (6 * k)) & 63];
  }
  if (size_t rest = in.size() - i) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | (rest == 2 ? uint32_t(uint8_t(in[i + 1])) << 8 : 0);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  out += '"';
}

void put_message(std::string& out, const pb::Message& m);

// One value of field f (element `i` if repeated): numbers as JSON numbers, like crit, not as strings.
void put_value(std::string& out, const pb::Message& m, const pb::FieldDescriptor* f, int i) {
  const pb::Reflection* r = m.GetReflection();
  const bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: out += std::to_string(rep ? r->GetRepeatedInt32(m, f, i) : r->GetInt32(m, f)); break;
    case pb::FieldDescriptor::CPPTYPE_INT64: out += std::to_string(rep ? r->GetRepeatedInt64(m, f, i) : r->GetInt64(m, f)); break;
    case pb::FieldDescriptor::CPPTYPE_UINT32: out += std::to_string(rep ? r->GetRepeatedUInt32(m, f, i) : r->GetUInt32(m, f)); break;
    case pb::FieldDescriptor::CPPTYPE_UINT64: out += std::to_string(rep ? r->GetRepeatedUInt64(m, f, i) : r->GetUInt64(m, f)); break;
    case pb::FieldDescriptor::CPPTYPE_BOOL: out += (rep ? r->GetRepeatedBool(m, f, i) : r->GetBool(m, f)) ? "true" : "false"; break;
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      double d = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_DOUBLE ? (rep ? r->GetRepeatedDouble(m, f, i) : r->GetDouble(m, f))
                                                                     : (rep ? r->GetRepeatedFloat(m, f, i) : r->GetFloat(m, f));
      char buf[32];
      snprintf(buf, sizeof buf, "%.17g", d);
      out += d == d && d - d == 0 ? buf : "null";  // JSON has no NaN or infinity
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_ENUM: {
      // Unknown values of closed proto2 enums never get here (the parser keeps them as unknown fields).
      const pb::EnumValueDescriptor* e = rep ? r->GetRepeatedEnum(m, f, i) : r->GetEnum(m, f);
      put_string(out, e->name());
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& s = rep ? r->GetRepeatedStringReference(m, f, i, &scratch) : r->GetStringReference(m, f, &scratch);
      if (f->type() == pb::FieldDescriptor::TYPE_BYTES) put_base64(out, s);
      else put_string(out, s);
      break;
    }
    case pb::FieldDescriptor::CPPTYPE_MESSAGE:
      put_message(out, rep ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f));
      break;
  }
}

// The set fields of m in field-number order, under their .proto names (crit's keys).
void put_message(std::string& out, const pb::Message& m) {
  std::vector<const pb::FieldDescriptor*> fields;
  m.GetReflection()->ListFields(m, &fields);
  out += '{';
  for (size_t k = 0; k < fields.size(); k++) {
    const pb::FieldDescriptor* f = fields[k];
    if (k) out += ", ";
    put_string(out, f->name());
    out += ": ";
    if (!f->is_repeated()) {
      put_value(out, m, f, -1);
      continue;
    }
    out += '[';
    int n = m.GetReflection()->FieldSize(m, f);
    for (int i = 0; i < n; i++) {
      if (i) out += ", ";
      put_value(out, m, f, i);
    }
    out += ']';
  }
  out += '}';
}

}  // namespace

Result<std::string> image_to_json(int dirfd, const std::string& name) {
  if (is_raw_file(name))
    return fail(make_error(Errc::invalid_argument, "show", name, "raw payload image, it has no entries to decode"));
  auto reader = CR_TRY(Reader::open_any(dirfd, name));
  const Kind& kind = reader.kind();
  if (!kind.entry)
    return fail(make_error(Errc::unsupported, "show", name, std::string("no schema for ") + kind.name + " images"));
  std::string out = std::string("{\"magic\": \"") + kind.name + "\", \"entries\": [";
  bool first = true;
  for (;;) {
    const pb::Message* proto = (first && kind.head) ? kind.head : kind.entry;
    std::unique_ptr<pb::Message> msg(proto->New());
    bool got = CR_TRY(reader.read(*msg));
    if (!got) break;
    std::string json;
    put_message(json, *msg);
    if (kind.payload_size) {
      uint64_t extra = kind.payload_size(*msg);
      std::string bytes = CR_TRY(reader.read_raw(extra));
      json.pop_back();  // '}'
      json += std::string(json.size() > 1 ? ", " : "") + "\"extra_bytes\": " + std::to_string(bytes.size()) + "}";
    }
    out += first ? "\n  " : ",\n  ";
    out += json;
    first = false;
  }
  out += first ? "]}\n" : "\n]}\n";
  return out;
}

}  // namespace crshim::image
