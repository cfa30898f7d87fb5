#include "checkpoint/image/json.h"

#include <google/protobuf/util/json_util.h>

#include <memory>

#include "checkpoint/image/catalog.h"
#include "checkpoint/image/image.h"

namespace crshim::image {

namespace {

Result<std::string> entry_json(const google::protobuf::Message& msg, const std::string& name) {
  google::protobuf::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string out;
  auto st = google::protobuf::util::MessageToJsonString(msg, &out, opts);
  if (!st.ok()) return fail(make_error(Errc::internal, "render", name, std::string(st.message())));
  return out;
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
    const google::protobuf::Message* proto = (first && kind.head) ? kind.head : kind.entry;
    std::unique_ptr<google::protobuf::Message> msg(proto->New());
    bool got = CR_TRY(reader.read(*msg));
    if (!got) break;
    std::string json = CR_TRY(entry_json(*msg, name));
    if (kind.payload_size) {
      uint64_t extra = kind.payload_size(*msg);
      std::string bytes = CR_TRY(reader.read_raw(extra));
      json.pop_back();  // '}'
      json += std::string(json.size() > 1 ? "," : "") + "\"extra_bytes\":" + std::to_string(bytes.size()) + "}";
    }
    out += first ? "\n  " : ",\n  ";
    out += json;
    first = false;
  }
  out += first ? "]}\n" : "\n]}\n";
  return out;
}

}  // namespace crshim::image
