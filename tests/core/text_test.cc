#include <gtest/gtest.h>

#include "hostfit/core.h"

namespace hostfit {
namespace {

TEST(TextTest, KeyedNumbersReadMeminfoAndMemoryStat) {
  const auto meminfo = parse_keyed_numbers(
      "MemTotal:       24576000 kB\nMemAvailable:   1000 kB\nHugePages_Total:       0\n"
      "garbage line\n:\nBroken: x kB\n");
  EXPECT_EQ(meminfo.at("MemTotal"), 24576000ull * 1024);
  EXPECT_EQ(meminfo.at("MemAvailable"), 1024000u);
  EXPECT_EQ(meminfo.at("HugePages_Total"), 0u);
  EXPECT_EQ(meminfo.count("Broken"), 0u);
  const auto stat = parse_keyed_numbers("anon 4096\nfile 8192\ntotal_cache 12\n");
  EXPECT_EQ(stat.at("file"), 8192u);
  EXPECT_EQ(stat.at("total_cache"), 12u);
}

TEST(TextTest, NumberParsersRejectTrailingGarbage) {
  EXPECT_EQ(parse_u64("42"), 42u);
  EXPECT_FALSE(parse_u64("42x"));
  EXPECT_FALSE(parse_u64("-1"));
  EXPECT_FALSE(parse_u64(""));
  EXPECT_EQ(parse_i64("-5"), -5);
  EXPECT_EQ(parse_double("2.5"), 2.5);
  EXPECT_FALSE(parse_double("1e3"));
  EXPECT_FALSE(parse_double("nan"));
}

TEST(TextTest, DurationsTakeAUnitOrMeanSeconds) {
  using std::chrono::microseconds;
  EXPECT_EQ(parse_duration("50ms"), microseconds(50000));
  EXPECT_EQ(parse_duration("1.5s"), microseconds(1500000));
  EXPECT_EQ(parse_duration("2"), microseconds(2000000));
  EXPECT_EQ(parse_duration("250us"), microseconds(250));
  EXPECT_EQ(parse_duration("2m"), microseconds(120000000));
  EXPECT_EQ(parse_duration(" 1h "), microseconds(3600000000));
  for (const char* bad : {"", "soon", "-5ms", "5 parsecs", "1e3ms", "9999h", "ms"}) {
    const auto d = parse_duration(bad);
    ASSERT_FALSE(d) << bad;
    EXPECT_EQ(d.error().kind, ErrorKind::kUsage);
    EXPECT_NE(d.error().message.find(std::string("'") + bad + "'"), std::string::npos)
        << d.error().message;
  }
}

TEST(TextTest, UtcTimesAreIso8601WithMilliseconds) {
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1795434736123));
  EXPECT_EQ(format_utc(t), "2026-11-23T11:52:16.123Z");
  EXPECT_EQ(format_utc(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(parse_utc(format_utc(t)), t);
  for (const char* bad : {"", "2026-11-23", "2026-11-23T11:52:16Z", "2026-11-23T11:52:16.123+01"})
    EXPECT_FALSE(parse_utc(bad)) << bad;
}

TEST(TextTest, SplitKeepsEmptyFieldsSplitWhitespaceDropsThem) {
  EXPECT_EQ(split("a,,b", ',').size(), 3u);
  EXPECT_EQ(split_whitespace("  a \t b\n").size(), 2u);
  EXPECT_EQ(trim("  x \n"), "x");
  EXPECT_EQ(trim("   "), "");
}

TEST(EscapeBytesTest, InvalidUtf8AndControlsBecomeOctalValidTextStays) {
  EXPECT_EQ(escape_bytes("/sys/fs/cgroup\xff/x"), "/sys/fs/cgroup\\377/x");
  EXPECT_EQ(escape_bytes("caf\xc3\xa9 \xe2\x82\xac"), "caf\xc3\xa9 \xe2\x82\xac");
  EXPECT_EQ(escape_bytes("\xc0\xaf"), "\\300\\257");           // overlong '/'
  EXPECT_EQ(escape_bytes("\xed\xa0\x80"), "\\355\\240\\200");  // a surrogate
  EXPECT_EQ(escape_bytes("\xe2\x82"), "\\342\\202");           // truncated
  EXPECT_EQ(escape_bytes("a\nb\tc"), "a\nb\tc");
  EXPECT_EQ(escape_bytes("a\nb\tc", true), "a\\012b\\011c");
}

}  // namespace
}  // namespace hostfit
