#include "common/host_layout/mountinfo.hpp"

#include <charconv>
#include <fstream>
#include <sstream>

namespace v2p::host_layout {
namespace {

// Splits on spaces (mountinfo never has empty fields).
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// The kernel escapes space, tab, newline and backslash as \ooo (octal) in paths.
std::string unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      const std::string_view oct = s.substr(i + 1, 3);
      unsigned v = 0;
      const auto [p, ec] = std::from_chars(oct.data(), oct.data() + oct.size(), v, 8);
      if (ec == std::errc() && p == oct.data() + oct.size() && v < 256) {
        out.push_back(static_cast<char>(v));
        i += 3;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

bool parse_majmin(std::string_view s, unsigned& ma, unsigned& mi) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos) return false;
  const auto a = std::from_chars(s.data(), s.data() + colon, ma);
  const auto b = std::from_chars(s.data() + colon + 1, s.data() + s.size(), mi);
  return a.ec == std::errc() && a.ptr == s.data() + colon && b.ec == std::errc() &&
         b.ptr == s.data() + s.size() && colon > 0 && colon + 1 < s.size();
}

}  // namespace

std::optional<MountEntry> parse_mountinfo_line(std::string_view line) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  const auto f = fields_of(line);
  // id parent major:minor root mount-point options [optional…] - fstype source superoptions
  if (f.size() < 9) return std::nullopt;
  std::size_t sep = 6;
  while (sep < f.size() && f[sep] != "-") ++sep;
  if (sep + 2 >= f.size()) return std::nullopt;  // no "-", or nothing after it
  MountEntry m;
  if (!parse_majmin(f[2], m.major, m.minor)) return std::nullopt;
  m.root = unescape(f[3]);
  m.mount_point = unescape(f[4]);
  m.fs_type = unescape(f[sep + 1]);
  m.source = unescape(f[sep + 2]);
  return m;
}

std::vector<MountEntry> parse_mountinfo(std::string_view text) {
  std::vector<MountEntry> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    if (auto m = parse_mountinfo_line(text.substr(pos, end - pos))) out.push_back(std::move(*m));
    pos = end + 1;
  }
  return out;
}

std::vector<MountEntry> read_mountinfo(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  return parse_mountinfo(text.str());
}

const MountEntry* mount_holding(const std::vector<MountEntry>& mounts,
                                std::string_view canonical_path) {
  const MountEntry* best = nullptr;
  for (const auto& m : mounts) {
    const std::string_view mp = m.mount_point;
    const bool prefix =
        canonical_path == mp ||
        (canonical_path.substr(0, mp.size()) == mp &&
         (mp == "/" || (canonical_path.size() > mp.size() && canonical_path[mp.size()] == '/')));
    // >=: a later mount over the same point hides the earlier one.
    if (prefix && (best == nullptr || mp.size() >= best->mount_point.size())) best = &m;
  }
  return best;
}

}  // namespace v2p::host_layout
