#include <bit>
#include <cstdio>

#include "hostfit/core.h"

namespace hostfit {
namespace {

constexpr std::string_view kListForm = "a CPU list like 0-3,8,10-11";
constexpr std::string_view kMaskForm = "a hex mask like ff,ffffffff";

std::unexpected<Error> bad_list(std::string_view text, std::string_view why) {
  std::string shown(text.substr(0, 80));
  return fail(ErrorKind::kUsage, "invalid CPU list '" + shown + "': " + std::string(why) +
                                     "; expected " + std::string(kListForm) + " (ids 0-" +
                                     std::to_string(CpuSet::kMaxId) + ")");
}

}  // namespace

CpuSet CpuSet::of(std::initializer_list<int> ids) {
  CpuSet set;
  for (int id : ids)
    set.set(id);
  return set;
}

CpuSet CpuSet::range(int first, int last) {
  CpuSet set;
  for (int id = std::max(first, 0); id <= last && id <= kMaxId; ++id)
    set.set(id);
  return set;
}

Result<CpuSet> CpuSet::parse_list(std::string_view text) {
  CpuSet set;
  const std::string_view body = trim(text);
  if (body.empty()) return set;
  for (std::string_view item : split(body, ',')) {
    item = trim(item);
    if (item.empty()) return bad_list(text, "empty item");
    const auto dash = item.find('-');
    const std::string_view lo_text = dash == std::string_view::npos ? item : item.substr(0, dash);
    const std::string_view hi_text = dash == std::string_view::npos ? item : item.substr(dash + 1);
    const auto lo = parse_u64(lo_text);
    const auto hi = parse_u64(hi_text);
    if (!lo || !hi) return bad_list(text, "'" + std::string(item) + "' is not an id or a range");
    if (*lo > kMaxId || *hi > kMaxId) {
      return bad_list(text,
                      "id " + std::string(*lo > kMaxId ? lo_text : hi_text) + " is out of range");
    }
    if (*hi < *lo) return bad_list(text, "range '" + std::string(item) + "' is descending");
    for (auto id = *lo; id <= *hi; ++id)
      set.set(static_cast<int>(id));
  }
  return set;
}

Result<CpuSet> CpuSet::parse_mask(std::string_view text) {
  std::string_view body = trim(text);
  if (body.starts_with("0x") || body.starts_with("0X")) body.remove_prefix(2);
  const auto bad = [&](std::string_view why) {
    return fail(ErrorKind::kParse, "invalid CPU mask '" + std::string(text.substr(0, 80)) + "': " +
                                       std::string(why) + "; expected " + std::string(kMaskForm));
  };
  if (body.empty()) return bad("empty");
  const auto words = split(body, ',');
  CpuSet set;
  int bit_base = 0;
  // The last comma-separated word holds CPUs 0-31, the one before it 32-63, and so on.
  for (auto it = words.rbegin(); it != words.rend(); ++it, bit_base += 32) {
    const std::string_view word = *it;
    if (word.empty() || word.size() > 8) return bad("each word is 1 to 8 hex digits");
    uint32_t bits = 0;
    for (char c : word) {
      const int digit = std::isdigit(static_cast<unsigned char>(c))
                            ? c - '0'
                            : (std::isxdigit(static_cast<unsigned char>(c))
                                   ? std::tolower(static_cast<unsigned char>(c)) - 'a' + 10
                                   : -1);
      if (digit < 0) return bad("'" + std::string(word) + "' is not hex");
      bits = (bits << 4) | static_cast<uint32_t>(digit);
    }
    for (int b = 0; b < 32; ++b) {
      if (!(bits & (1u << b))) continue;
      if (bit_base + b > kMaxId) return bad("CPU id out of range");
      set.set(bit_base + b);
    }
  }
  return set;
}

std::string CpuSet::to_list() const {
  std::string out;
  int id = first();
  while (id >= 0) {
    int end = id;
    while (contains(end + 1))
      ++end;
    if (!out.empty()) out += ',';
    out += std::to_string(id);
    if (end > id) out += '-' + std::to_string(end);
    id = -1;
    for (int next = end + 1; next <= last(); ++next) {
      if (contains(next)) {
        id = next;
        break;
      }
    }
  }
  return out;
}

std::string CpuSet::to_mask() const {
  if (words_.empty()) return "0";
  const int top = last();
  const int nwords32 = top / 32 + 1;
  std::string out;
  for (int w = nwords32 - 1; w >= 0; --w) {
    const uint64_t word64 = words_[static_cast<size_t>(w / 2)];
    const auto word = static_cast<uint32_t>(w % 2 ? word64 >> 32 : word64);
    char buf[9];
    std::snprintf(buf, sizeof buf, "%08x", word);
    if (!out.empty()) out += ',';
    out += buf;
  }
  return out;
}

void CpuSet::set(int id) {
  if (id < 0 || id > kMaxId) return;
  const auto w = static_cast<size_t>(id / 64);
  if (words_.size() <= w) words_.resize(w + 1, 0);
  words_[w] |= uint64_t{1} << (id % 64);
}

void CpuSet::reset(int id) {
  if (!contains(id)) return;
  words_[static_cast<size_t>(id / 64)] &= ~(uint64_t{1} << (id % 64));
  drop_trailing_zero_words();
}

bool CpuSet::contains(int id) const {
  if (id < 0) return false;
  const auto w = static_cast<size_t>(id / 64);
  return w < words_.size() && (words_[w] >> (id % 64) & 1);
}

int CpuSet::count() const {
  int n = 0;
  for (uint64_t w : words_)
    n += std::popcount(w);
  return n;
}

int CpuSet::first() const {
  for (size_t w = 0; w < words_.size(); ++w) {
    if (words_[w]) return static_cast<int>(w * 64) + std::countr_zero(words_[w]);
  }
  return -1;
}

int CpuSet::last() const {
  if (words_.empty()) return -1;
  const size_t w = words_.size() - 1;
  return static_cast<int>(w * 64) + 63 - std::countl_zero(words_[w]);
}

std::vector<int> CpuSet::ids() const {
  std::vector<int> out;
  out.reserve(static_cast<size_t>(count()));
  for (size_t w = 0; w < words_.size(); ++w) {
    uint64_t bits = words_[w];
    while (bits) {
      out.push_back(static_cast<int>(w * 64) + std::countr_zero(bits));
      bits &= bits - 1;
    }
  }
  return out;
}

bool CpuSet::is_subset_of(const CpuSet& other) const {
  return (*this - other).empty();
}

CpuSet& CpuSet::operator&=(const CpuSet& other) {
  if (words_.size() > other.words_.size()) words_.resize(other.words_.size());
  for (size_t w = 0; w < words_.size(); ++w)
    words_[w] &= other.words_[w];
  drop_trailing_zero_words();
  return *this;
}

CpuSet& CpuSet::operator|=(const CpuSet& other) {
  if (words_.size() < other.words_.size()) words_.resize(other.words_.size(), 0);
  for (size_t w = 0; w < other.words_.size(); ++w)
    words_[w] |= other.words_[w];
  return *this;
}

CpuSet& CpuSet::operator-=(const CpuSet& other) {
  const size_t n = std::min(words_.size(), other.words_.size());
  for (size_t w = 0; w < n; ++w)
    words_[w] &= ~other.words_[w];
  drop_trailing_zero_words();
  return *this;
}

bool operator==(const CpuSet& a, const CpuSet& b) {
  return a.words_ == b.words_;
}

void CpuSet::drop_trailing_zero_words() {
  while (!words_.empty() && words_.back() == 0)
    words_.pop_back();
}

}  // namespace hostfit
