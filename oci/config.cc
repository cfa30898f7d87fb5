#include "oci/config.h"

#include <sys/capability.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>

#include "checkpoint/base/sys.h"

namespace crshim::oci {

namespace {

using json = nlohmann::json;

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "an unexpected value";
  }
}

constexpr std::array<std::string_view, 8> kNamespaceTypes = {"pid", "network", "mount", "ipc",
                                                             "uts", "user",    "cgroup", "time"};

// Walks the document, turning the first problem into an error naming the field.
class Reader {
 public:
  explicit Reader(const std::string& origin) : origin_(origin) {}

  Error bad(const std::string& field, const std::string& what) const {
    return make_error(Errc::invalid_argument, "parse", origin_, field + ": " + what);
  }
  Error wrong_type(const std::string& field, const char* want, const json& got) const {
    return bad(field, std::string("expected ") + want + ", got " + type_name(got));
  }

  // The member `key` of object `obj` (null when absent), checked against `want`.
  Result<const json*> member(const json& obj, const char* key, const std::string& field, json::value_t want,
                             const char* want_name, bool required) const {
    auto it = obj.find(key);
    if (it == obj.end()) {
      if (required) return fail(bad(field, "missing"));
      return nullptr;
    }
    bool ok = it->type() == want ||
              (want == json::value_t::number_integer && it->type() == json::value_t::number_unsigned);
    if (!ok) return fail(wrong_type(field, want_name, *it));
    return &*it;
  }

  Result<std::optional<std::string>> string(const json& obj, const char* key, const std::string& field,
                                            bool required = false) const {
    const json* j = CR_TRY(member(obj, key, field, json::value_t::string, "a string", required));
    if (!j) return std::optional<std::string>();
    return std::optional<std::string>(j->get_ref<const std::string&>());
  }

  Result<std::vector<std::string>> strings(const json& obj, const char* key, const std::string& field) const {
    const json* j = CR_TRY(member(obj, key, field, json::value_t::array, "an array of strings", false));
    std::vector<std::string> out;
    if (!j) return out;
    for (size_t i = 0; i < j->size(); i++) {
      const json& e = (*j)[i];
      if (!e.is_string()) return fail(wrong_type(field + "[" + std::to_string(i) + "]", "a string", e));
      out.push_back(e.get_ref<const std::string&>());
    }
    return out;
  }

  // The bounding, effective and permitted sets of process.capabilities ("CAP_CHOWN", ...) as masks.
  Result<Capabilities> capabilities(const json& caps) const {
    Capabilities out;
    for (auto [name, mask] : {std::pair{"bounding", &out.bounding}, {"effective", &out.effective}, {"permitted", &out.permitted}}) {
      const std::string f = std::string("process.capabilities.") + name;
      for (const auto& cap : CR_TRY(strings(caps, name, f))) {
        cap_value_t v;
        if (::cap_from_name(cap.c_str(), &v) < 0 || v < 0 || v >= 64) return fail(bad(f, "unknown capability '" + cap + "'"));
        *mask |= uint64_t(1) << v;
      }
    }
    return out;
  }

  // linux.uidMappings or linux.gidMappings: [{containerID, hostID, size}], each a 32-bit id count.
  Result<std::vector<IdMapping>> id_mappings(const json& obj, const char* key, const std::string& field) const {
    const json* list = CR_TRY(member(obj, key, field, json::value_t::array, "an array", false));
    std::vector<IdMapping> out;
    if (!list) return out;
    for (size_t i = 0; i < list->size(); i++) {
      const std::string f = field + "[" + std::to_string(i) + "]";
      const json& m = (*list)[i];
      if (!m.is_object()) return fail(wrong_type(f, "an object", m));
      IdMapping map;
      for (auto [name, value] :
           {std::pair{"containerID", &map.container_id}, {"hostID", &map.host_id}, {"size", &map.size}}) {
        const json* v = CR_TRY(member(m, name, f + "." + name, json::value_t::number_integer, "an integer", true));
        if (!v->is_number_unsigned() || v->get<uint64_t>() > UINT32_MAX)
          return fail(bad(f + "." + name, "must be an id from 0 to 4294967295, got " + v->dump()));
        *value = static_cast<uint32_t>(v->get<uint64_t>());
      }
      if (map.size == 0) return fail(bad(f + ".size", "must not be 0"));
      out.push_back(map);
    }
    return out;
  }

  Result<bool> boolean(const json& obj, const char* key, const std::string& field) const {
    const json* j = CR_TRY(member(obj, key, field, json::value_t::boolean, "a boolean", false));
    return j && j->get<bool>();
  }

  Result<std::vector<std::string>> absolute_paths(const json& obj, const char* key, const std::string& field) const {
    auto v = CR_TRY(strings(obj, key, field));
    for (size_t i = 0; i < v.size(); i++)
      if (v[i].empty() || v[i][0] != '/')
        return fail(bad(field + "[" + std::to_string(i) + "]", "'" + v[i] + "' is not an absolute path"));
    return v;
  }

  Result<std::vector<Hook>> hooks(const json& obj, const char* key) const {
    const std::string field = std::string("hooks.") + key;
    const json* list = CR_TRY(member(obj, key, field, json::value_t::array, "an array", false));
    std::vector<Hook> out;
    if (!list) return out;
    for (size_t i = 0; i < list->size(); i++) {
      const std::string f = field + "[" + std::to_string(i) + "]";
      const json& h = (*list)[i];
      if (!h.is_object()) return fail(wrong_type(f, "an object", h));
      Hook hook;
      hook.path = *CR_TRY(string(h, "path", f + ".path", true));
      if (hook.path.empty() || hook.path[0] != '/')
        return fail(bad(f + ".path", "'" + hook.path + "' is not an absolute path"));
      hook.args = CR_TRY(strings(h, "args", f + ".args"));
      hook.env = CR_TRY(strings(h, "env", f + ".env"));
      for (size_t e = 0; e < hook.env.size(); e++)
        if (hook.env[e].find('=') == std::string::npos)
          return fail(bad(f + ".env[" + std::to_string(e) + "]", "'" + hook.env[e] + "' is not NAME=VALUE"));
      const json* t = CR_TRY(member(h, "timeout", f + ".timeout", json::value_t::number_integer, "an integer", false));
      if (t) {
        bool positive = t->is_number_unsigned() ? t->get<uint64_t>() > 0 : t->get<int64_t>() > 0;
        bool fits = t->is_number_unsigned() ? t->get<uint64_t>() <= INT_MAX : t->get<int64_t>() <= INT_MAX;
        if (!positive || !fits) return fail(bad(f + ".timeout", "must be a positive number of seconds, got " + t->dump()));
        hook.timeout = static_cast<int>(t->get<int64_t>());
      }
      out.push_back(std::move(hook));
    }
    return out;
  }

 private:
  const std::string& origin_;
};

// Deepest nesting of arrays/objects, counted outside strings; stops counting past the limit.
int nesting_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') deepest = std::max(deepest, ++depth);
    else if ((c == ']' || c == '}') && depth > 0) depth--;
    if (deepest > kMaxConfigDepth) break;
  }
  return deepest;
}

Result<Config> convert(const json& doc, const Reader& r) {
  if (!doc.is_object()) return fail(r.wrong_type("(top level)", "an object", doc));
  Config c;
  c.oci_version = *CR_TRY(r.string(doc, "ociVersion", "ociVersion", true));

  const json* root = CR_TRY(r.member(doc, "root", "root", json::value_t::object, "an object", true));
  c.root_path = *CR_TRY(r.string(*root, "path", "root.path", true));
  if (c.root_path.empty()) return fail(r.bad("root.path", "must not be empty"));
  c.root_readonly = CR_TRY(r.boolean(*root, "readonly", "root.readonly"));

  if (const json* p = CR_TRY(r.member(doc, "process", "process", json::value_t::object, "an object", false))) {
    c.terminal = CR_TRY(r.boolean(*p, "terminal", "process.terminal"));
    const json* caps = CR_TRY(r.member(*p, "capabilities", "process.capabilities", json::value_t::object, "an object", false));
    if (caps) c.capabilities = CR_TRY(r.capabilities(*caps));
  }

  if (const json* ms = CR_TRY(r.member(doc, "mounts", "mounts", json::value_t::array, "an array", false))) {
    for (size_t i = 0; i < ms->size(); i++) {
      const std::string f = "mounts[" + std::to_string(i) + "]";
      const json& m = (*ms)[i];
      if (!m.is_object()) return fail(r.wrong_type(f, "an object", m));
      Mount mount;
      mount.destination = *CR_TRY(r.string(m, "destination", f + ".destination", true));
      if (mount.destination.empty() || mount.destination[0] != '/')
        return fail(r.bad(f + ".destination", "'" + mount.destination + "' is not an absolute path"));
      mount.type = CR_TRY(r.string(m, "type", f + ".type")).value_or("");
      mount.source = CR_TRY(r.string(m, "source", f + ".source")).value_or("");
      mount.options = CR_TRY(r.strings(m, "options", f + ".options"));
      if (mount.is_bind() && mount.source.empty()) return fail(r.bad(f + ".source", "a bind mount needs a source"));
      c.mounts.push_back(std::move(mount));
    }
  }

  if (const json* h = CR_TRY(r.member(doc, "hooks", "hooks", json::value_t::object, "an object", false))) {
    c.hooks.prestart = CR_TRY(r.hooks(*h, "prestart"));
    c.hooks.create_runtime = CR_TRY(r.hooks(*h, "createRuntime"));
    c.hooks.create_container = CR_TRY(r.hooks(*h, "createContainer"));
    c.hooks.start_container = CR_TRY(r.hooks(*h, "startContainer"));
    c.hooks.poststart = CR_TRY(r.hooks(*h, "poststart"));
    c.hooks.poststop = CR_TRY(r.hooks(*h, "poststop"));
  }

  if (const json* a = CR_TRY(r.member(doc, "annotations", "annotations", json::value_t::object, "an object", false))) {
    for (const auto& [k, v] : a->items()) {
      if (!v.is_string()) return fail(r.wrong_type("annotations." + k, "a string", v));
      c.annotations[k] = v.get_ref<const std::string&>();
    }
  }

  if (const json* l = CR_TRY(r.member(doc, "linux", "linux", json::value_t::object, "an object", false))) {
    if (const json* ns = CR_TRY(r.member(*l, "namespaces", "linux.namespaces", json::value_t::array, "an array", false))) {
      for (size_t i = 0; i < ns->size(); i++) {
        const std::string f = "linux.namespaces[" + std::to_string(i) + "]";
        const json& n = (*ns)[i];
        if (!n.is_object()) return fail(r.wrong_type(f, "an object", n));
        Namespace entry;
        entry.type = *CR_TRY(r.string(n, "type", f + ".type", true));
        if (std::find(kNamespaceTypes.begin(), kNamespaceTypes.end(), entry.type) == kNamespaceTypes.end())
          return fail(r.bad(f + ".type", "unknown namespace type '" + entry.type + "'"));
        if (c.find_namespace(entry.type))
          return fail(r.bad(f + ".type", "namespace type '" + entry.type + "' appears twice"));
        entry.path = CR_TRY(r.string(n, "path", f + ".path")).value_or("");
        if (!entry.path.empty() && entry.path[0] != '/')
          return fail(r.bad(f + ".path", "'" + entry.path + "' is not an absolute path"));
        c.namespaces.push_back(std::move(entry));
      }
    }
    c.uid_mappings = CR_TRY(r.id_mappings(*l, "uidMappings", "linux.uidMappings"));
    c.gid_mappings = CR_TRY(r.id_mappings(*l, "gidMappings", "linux.gidMappings"));
    c.cgroups_path = CR_TRY(r.string(*l, "cgroupsPath", "linux.cgroupsPath"));
    if (c.cgroups_path && c.cgroups_path->find("..") != std::string::npos)
      return fail(r.bad("linux.cgroupsPath", "'" + *c.cgroups_path + "' must not contain '..'"));
    if (c.cgroups_path && c.cgroups_path->find(':') != std::string::npos)
      return fail(r.bad("linux.cgroupsPath", "'" + *c.cgroups_path +
                                                 "' looks like a systemd slice:prefix:name path, which is not supported"));
    c.seccomp = CR_TRY(r.member(*l, "seccomp", "linux.seccomp", json::value_t::object, "an object", false)) != nullptr;
    c.masked_paths = CR_TRY(r.absolute_paths(*l, "maskedPaths", "linux.maskedPaths"));
    c.readonly_paths = CR_TRY(r.absolute_paths(*l, "readonlyPaths", "linux.readonlyPaths"));
  }
  return c;
}

}  // namespace

bool Mount::is_bind() const {
  if (type == "bind") return true;
  return std::find(options.begin(), options.end(), "bind") != options.end() ||
         std::find(options.begin(), options.end(), "rbind") != options.end();
}

const Namespace* Config::find_namespace(std::string_view type) const {
  for (const auto& n : namespaces)
    if (n.type == type) return &n;
  return nullptr;
}

Result<Config> parse_config(std::string_view text, const std::string& origin) {
  Reader r(origin);
  if (text.size() > kMaxConfigSize)
    return fail(r.bad("(file)", std::to_string(text.size()) + " bytes is larger than the limit of " +
                                    std::to_string(kMaxConfigSize)));
  if (nesting_depth(text) > kMaxConfigDepth)
    return fail(r.bad("(file)", "nested deeper than " + std::to_string(kMaxConfigDepth) + " levels"));
  json doc;
  try {
    doc = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." without the tag.
    std::string what = e.what();
    if (auto close = what.find("] "); what.rfind("[json.exception.", 0) == 0 && close != std::string::npos)
      what.erase(0, close + 2);
    // The error quotes input: keep it one printable line.
    for (char& ch : what)
      if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ch = '?';
    return fail(make_error(Errc::invalid_argument, "parse", origin, "not valid JSON: " + what));
  }
  return convert(doc, r);
}

Result<Config> load_config(const std::string& bundle_dir) {
  std::string path = bundle_dir + "/config.json";
  auto text = sys::read_file(path);
  if (!text) {
    Error e = std::move(text.error());
    if (e.err == ENOENT) e.with_hint("--bundle must name an OCI bundle: a directory holding config.json");
    return fail(std::move(e));
  }
  return parse_config(*text, path);
}

}  // namespace crshim::oci
