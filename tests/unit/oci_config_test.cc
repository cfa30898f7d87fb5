// config.json parsing: the fields a checkpoint/restore uses, and one clear error for every bad input.
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "oci/config.h"

namespace crshim::oci {
namespace {

const char* kValid = R"({
  "ociVersion": "1.0.2-dev",
  "process": {"terminal": true, "args": ["sh"]},
  "root": {"path": "rootfs", "readonly": true},
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind", "rw"]},
    {"destination": "/cfg", "source": "cfg", "options": ["bind", "ro"]}
  ],
  "hooks": {
    "prestart": [{"path": "/bin/hook", "args": ["hook", "pre"], "env": ["A=1"], "timeout": 5}],
    "createRuntime": [{"path": "/bin/hook2"}],
    "poststart": [{"path": "/bin/hook3", "args": ["hook3"]}]
  },
  "annotations": {"org.example": "yes"},
  "linux": {
    "namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/n1"}, {"type": "mount"},
                   {"type": "ipc"}, {"type": "uts", "path": "/proc/1/ns/uts"}],
    "cgroupsPath": "/ctr1",
    "maskedPaths": ["/proc/kcore", "/proc/keys"],
    "readonlyPaths": ["/proc/sys"],
    "unknownField": {"ignored": true}
  },
  "vendorExtension": [1, 2, 3]
})";

// The message of the error parsing `text` gives ("" if it parsed).
std::string error_of(const std::string& text) {
  auto c = parse_config(text);
  return c ? std::string() : c.error().message;
}

TEST(OciConfig, ParsesEveryFieldTheBundleVerbsUse) {
  auto c = parse_config(kValid);
  ASSERT_TRUE(c) << c.error().render();
  EXPECT_EQ(c->oci_version, "1.0.2-dev");
  EXPECT_EQ(c->root_path, "rootfs");
  EXPECT_TRUE(c->root_readonly);
  EXPECT_TRUE(c->terminal);
  ASSERT_EQ(c->mounts.size(), 3u);
  EXPECT_FALSE(c->mounts[0].is_bind());
  EXPECT_TRUE(c->mounts[1].is_bind());
  EXPECT_EQ(c->mounts[1].source, "/srv/data");
  EXPECT_TRUE(c->mounts[2].is_bind());  // no type, a bind option
  EXPECT_EQ(c->mounts[2].options, (std::vector<std::string>{"bind", "ro"}));
  ASSERT_EQ(c->hooks.prestart.size(), 1u);
  EXPECT_EQ(c->hooks.prestart[0].path, "/bin/hook");
  EXPECT_EQ(c->hooks.prestart[0].args, (std::vector<std::string>{"hook", "pre"}));
  EXPECT_EQ(c->hooks.prestart[0].env, (std::vector<std::string>{"A=1"}));
  EXPECT_EQ(c->hooks.prestart[0].timeout, 5);
  ASSERT_EQ(c->hooks.create_runtime.size(), 1u);
  EXPECT_FALSE(c->hooks.create_runtime[0].timeout.has_value());
  EXPECT_EQ(c->hooks.poststart.size(), 1u);
  EXPECT_TRUE(c->hooks.poststop.empty());
  EXPECT_EQ(c->annotations.at("org.example"), "yes");
  ASSERT_EQ(c->namespaces.size(), 5u);
  ASSERT_NE(c->find_namespace("network"), nullptr);
  EXPECT_EQ(c->find_namespace("network")->path, "/run/netns/n1");
  EXPECT_EQ(c->find_namespace("pid")->path, "");
  EXPECT_EQ(c->find_namespace("time"), nullptr);
  EXPECT_EQ(c->cgroups_path, "/ctr1");
  EXPECT_EQ(c->masked_paths, (std::vector<std::string>{"/proc/kcore", "/proc/keys"}));
  EXPECT_EQ(c->readonly_paths, (std::vector<std::string>{"/proc/sys"}));
}

TEST(OciConfig, MinimalConfigNeedsOnlyVersionAndRoot) {
  auto c = parse_config(R"({"ociVersion": "1.0.0", "root": {"path": "/abs/rootfs"}})");
  ASSERT_TRUE(c) << c.error().render();
  EXPECT_EQ(c->root_path, "/abs/rootfs");
  EXPECT_FALSE(c->terminal);
  EXPECT_TRUE(c->mounts.empty());
  EXPECT_FALSE(c->cgroups_path.has_value());
}

TEST(OciConfig, ErrorsNameTheFileAndTheField) {
  auto c = parse_config(R"({"ociVersion": "1", "root": {"path": 7}})", "/b/config.json");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::invalid_argument);
  EXPECT_EQ(c.error().render(), "parse /b/config.json: root.path: expected a string, got an integer");
}

TEST(OciConfig, MissingOrWrongTypedRequiredFields) {
  EXPECT_EQ(error_of(R"({"ociVersion": "1"})"), "root: missing");
  EXPECT_EQ(error_of(R"({"root": {"path": "r"}})"), "ociVersion: missing");
  EXPECT_EQ(error_of(R"({"ociVersion": 1, "root": {"path": "r"}})"), "ociVersion: expected a string, got an integer");
  EXPECT_EQ(error_of(R"({"ociVersion": "1", "root": "rootfs"})"), "root: expected an object, got a string");
  EXPECT_EQ(error_of(R"({"ociVersion": "1", "root": {}})"), "root.path: missing");
  EXPECT_EQ(error_of(R"({"ociVersion": "1", "root": {"path": ""}})"), "root.path: must not be empty");
  EXPECT_EQ(error_of(R"({"ociVersion": "1", "root": {"path": "r", "readonly": "yes"}})"),
            "root.readonly: expected a boolean, got a string");
  EXPECT_EQ(error_of(R"([1, 2])"), "(top level): expected an object, got an array");
  EXPECT_EQ(error_of(R"(null)"), "(top level): expected an object, got null");
}

TEST(OciConfig, WrongTypesInOptionalSections) {
  const std::string base = R"({"ociVersion": "1", "root": {"path": "r"}, )";
  EXPECT_EQ(error_of(base + R"("process": {"terminal": 1}})"), "process.terminal: expected a boolean, got an integer");
  EXPECT_EQ(error_of(base + R"("mounts": {}})"), "mounts: expected an array, got an object");
  EXPECT_EQ(error_of(base + R"("mounts": [3]})"), "mounts[0]: expected an object, got an integer");
  EXPECT_EQ(error_of(base + R"("mounts": [{"type": "proc"}]})"), "mounts[0].destination: missing");
  EXPECT_EQ(error_of(base + R"("mounts": [{"destination": "proc"}]})"),
            "mounts[0].destination: 'proc' is not an absolute path");
  EXPECT_EQ(error_of(base + R"("mounts": [{"destination": "/d", "type": "bind"}]})"),
            "mounts[0].source: a bind mount needs a source");
  EXPECT_EQ(error_of(base + R"("mounts": [{"destination": "/d", "options": ["ro", 5]}]})"),
            "mounts[0].options[1]: expected a string, got an integer");
  EXPECT_EQ(error_of(base + R"("hooks": []})"), "hooks: expected an object, got an array");
  EXPECT_EQ(error_of(base + R"("hooks": {"prestart": [{}]}})"), "hooks.prestart[0].path: missing");
  EXPECT_EQ(error_of(base + R"("hooks": {"poststart": [{"path": "hook"}]}})"),
            "hooks.poststart[0].path: 'hook' is not an absolute path");
  EXPECT_EQ(error_of(base + R"("hooks": {"prestart": [{"path": "/h", "timeout": 0}]}})"),
            "hooks.prestart[0].timeout: must be a positive number of seconds, got 0");
  EXPECT_EQ(error_of(base + R"("hooks": {"prestart": [{"path": "/h", "timeout": -3}]}})"),
            "hooks.prestart[0].timeout: must be a positive number of seconds, got -3");
  EXPECT_EQ(error_of(base + R"("hooks": {"prestart": [{"path": "/h", "timeout": 1.5}]}})"),
            "hooks.prestart[0].timeout: expected an integer, got a number");
  EXPECT_EQ(error_of(base + R"("hooks": {"createRuntime": [{"path": "/h", "env": ["NOEQUALS"]}]}})"),
            "hooks.createRuntime[0].env[0]: 'NOEQUALS' is not NAME=VALUE");
  EXPECT_EQ(error_of(base + R"("annotations": {"a": 1}})"), "annotations.a: expected a string, got an integer");
  EXPECT_EQ(error_of(base + R"("linux": {"cgroupsPath": 12}})"), "linux.cgroupsPath: expected a string, got an integer");
  EXPECT_EQ(error_of(base + R"("linux": {"cgroupsPath": "/a/../b"}})"), "linux.cgroupsPath: '/a/../b' must not contain '..'");
  EXPECT_EQ(error_of(base + R"("linux": {"maskedPaths": ["proc/kcore"]}})"),
            "linux.maskedPaths[0]: 'proc/kcore' is not an absolute path");
  EXPECT_EQ(error_of(base + R"("linux": {"readonlyPaths": "/proc"}})"),
            "linux.readonlyPaths: expected an array of strings, got a string");
}

TEST(OciConfig, NamespaceEntriesAreChecked) {
  const std::string base = R"({"ociVersion": "1", "root": {"path": "r"}, "linux": {"namespaces": )";
  EXPECT_EQ(error_of(base + R"([{"type": "pid"}, {"type": "netwrk"}]}})"),
            "linux.namespaces[1].type: unknown namespace type 'netwrk'");
  EXPECT_EQ(error_of(base + R"([{"type": "ipc"}, {"type": "ipc"}]}})"),
            "linux.namespaces[1].type: namespace type 'ipc' appears twice");
  EXPECT_EQ(error_of(base + R"([{"path": "/x"}]}})"), "linux.namespaces[0].type: missing");
  EXPECT_EQ(error_of(base + R"([{"type": "network", "path": "run/netns/x"}]}})"),
            "linux.namespaces[0].path: 'run/netns/x' is not an absolute path");
  EXPECT_EQ(error_of(base + R"("pid"}})"), "linux.namespaces: expected an array, got a string");
}

TEST(OciConfig, IdMappings) {
  auto c = parse_config(R"({"ociVersion": "1", "root": {"path": "r"}, "linux": {
      "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
      "gidMappings": [{"containerID": 0, "hostID": 4294967295, "size": 1}, {"containerID": 1, "hostID": 7, "size": 2}]}})");
  ASSERT_TRUE(c) << c.error().render();
  EXPECT_EQ(c->uid_mappings, (std::vector<IdMapping>{{0, 100000, 65536}}));
  EXPECT_EQ(c->gid_mappings, (std::vector<IdMapping>{{0, 4294967295u, 1}, {1, 7, 2}}));
  const std::string base = R"({"ociVersion": "1", "root": {"path": "r"}, "linux": {"uidMappings": )";
  EXPECT_EQ(error_of(base + R"({}}})"), "linux.uidMappings: expected an array, got an object");
  EXPECT_EQ(error_of(base + R"([{"containerID": 0, "size": 1}]}})"), "linux.uidMappings[0].hostID: missing");
  EXPECT_EQ(error_of(base + R"([{"containerID": -1, "hostID": 0, "size": 1}]}})"),
            "linux.uidMappings[0].containerID: must be an id from 0 to 4294967295, got -1");
  EXPECT_EQ(error_of(base + R"([{"containerID": 0, "hostID": 4294967296, "size": 1}]}})"),
            "linux.uidMappings[0].hostID: must be an id from 0 to 4294967295, got 4294967296");
  EXPECT_EQ(error_of(base + R"([{"containerID": 0, "hostID": 1, "size": 0}]}})"), "linux.uidMappings[0].size: must not be 0");
  EXPECT_EQ(error_of(base + R"([{"containerID": 0, "hostID": "1", "size": 1}]}})"),
            "linux.uidMappings[0].hostID: expected an integer, got a string");
}

TEST(OciConfig, BadJsonSaysWhereItBroke) {
  EXPECT_EQ(error_of(R"({"ociVersion": "1", "root": {"path": "r"},})"),
            "not valid JSON: parse error at line 1, column 43: syntax error while parsing object key - unexpected '}'; "
            "expected string literal");
  EXPECT_EQ(error_of(""),
            "not valid JSON: parse error at line 1, column 1: syntax error while parsing value - unexpected end of input; "
            "expected '[', '{', or a literal");
  std::string truncated = std::string(kValid).substr(0, 120);
  EXPECT_TRUE(error_of(truncated).starts_with("not valid JSON: parse error at line ")) << error_of(truncated);
}

TEST(OciConfig, DeepNestingAndHugeInputsAreRefusedBeforeParsing) {
  std::string deep = R"({"ociVersion": "1", "root": {"path": "r"}, "x": )" + std::string(100, '[') + std::string(100, ']') + "}";
  EXPECT_EQ(error_of(deep), "(file): nested deeper than 64 levels");
  // Brackets inside strings do not count.
  std::string in_string = R"({"ociVersion": "1", "root": {"path": "r"}, "x": ")" + std::string(100, '[') + "\"}";
  EXPECT_EQ(error_of(in_string), "");
  std::string huge = R"({"ociVersion": "1", "root": {"path": "r"}, "x": ")" + std::string(kMaxConfigSize, 'a') + "\"}";
  EXPECT_EQ(error_of(huge), "(file): " + std::to_string(huge.size()) + " bytes is larger than the limit of 4194304");
}

// Every truncation and many byte flips of a valid config either parse or fail with one clean,
// non-empty line; none crashes (run under ASan/UBSan in CI).
TEST(OciConfig, TruncationsAndByteFlipsFailCleanly) {
  const std::string valid = kValid;
  size_t errors = 0;
  for (size_t n = 0; n < valid.size(); n++) {
    auto c = parse_config(valid.substr(0, n));
    ASSERT_FALSE(c) << "a config cut at byte " << n << " parsed";
    EXPECT_FALSE(c.error().message.empty());
    EXPECT_EQ(c.error().render().find('\n'), std::string::npos) << n;
    errors++;
  }
  std::mt19937 rng(42);
  size_t parsed = 0;
  for (int i = 0; i < 4000; i++) {
    std::string s = valid;
    int flips = 1 + int(rng() % 3);
    for (int f = 0; f < flips; f++) s[rng() % s.size()] = char(rng() % 256);
    auto c = parse_config(s);
    if (c) {
      parsed++;
      EXPECT_FALSE(c->root_path.empty());
    } else {
      EXPECT_FALSE(c.error().message.empty());
      EXPECT_EQ(c.error().render().find('\n'), std::string::npos) << s;
    }
  }
  EXPECT_EQ(errors, valid.size());
  // Flips inside string values keep the document valid: some must parse, most must not.
  EXPECT_GT(parsed, 0u);
  EXPECT_LT(parsed, 4000u);
}

TEST(OciConfig, CapabilitiesAndSeccompPresence) {
  auto c = parse_config(R"({"ociVersion": "1.0.2", "root": {"path": "r"},
    "process": {"capabilities": {"bounding": ["CAP_CHOWN", "CAP_KILL"], "effective": ["CAP_KILL"],
                                 "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"]}},
    "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}})");
  ASSERT_TRUE(c) << c.error().render();
  ASSERT_TRUE(c->capabilities);
  EXPECT_EQ(c->capabilities->bounding, (1ull << 0) | (1ull << 5));  // CAP_CHOWN 0, CAP_KILL 5
  EXPECT_EQ(c->capabilities->effective, 1ull << 5);
  EXPECT_EQ(c->capabilities->permitted, 1ull << 5);
  EXPECT_TRUE(c->seccomp);
  auto bare = parse_config(R"({"ociVersion": "1.0.2", "root": {"path": "r"}})");
  ASSERT_TRUE(bare);
  EXPECT_FALSE(bare->capabilities);
  EXPECT_FALSE(bare->seccomp);
}

TEST(OciConfig, BadCapabilitiesAreNamed) {
  EXPECT_EQ(error_of(R"({"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"capabilities": {"effective": ["CAP_NOPE"]}}})"),
            "process.capabilities.effective: unknown capability 'CAP_NOPE'");
  EXPECT_EQ(error_of(R"({"ociVersion": "1.0.2", "root": {"path": "r"}, "process": {"capabilities": {"bounding": "CAP_KILL"}}})"),
            "process.capabilities.bounding: expected an array of strings, got a string");
  EXPECT_EQ(error_of(R"({"ociVersion": "1.0.2", "root": {"path": "r"}, "linux": {"seccomp": []}})"), "linux.seccomp: expected an object, got an array");
}

}  // namespace
}  // namespace crshim::oci
