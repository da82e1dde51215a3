// GET /v1/node/topology: the machine's shape and the CPUs other tools pin, for the page's map.
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "hostfit/web.h"

namespace hostfit::web {
namespace {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

// A read younger than this is answered as it is; an older one is answered too, and read again
// behind it, so the next answer is fresh.
constexpr auto kPinsFreshFor = std::chrono::seconds(5);

// The foreign pins, read in a thread of their own: reading them walks every cpuset cgroup and
// every /proc/PID/status of the host (a quarter of a second with a thousand of each on this
// machine), which neither the daemon's loop nor a page load should wait for. A read is answered
// from the last one while hostfit's own holds are the same (they decide which cpusets are ours);
// after they change, requests wait for a read that knows them.
class PinsReader : public std::enable_shared_from_this<PinsReader> {
 public:
  using Done = std::function<void(const ForeignPins&, Clock::time_point)>;

  PinsReader(asio::io_context& io, Sysroot root, std::shared_ptr<const HostFacts> facts)
      : io_(io), root_(std::move(root)), facts_(std::move(facts)) {}
  ~PinsReader() {
    if (thread_.joinable()) thread_.join();
  }

  // Calls done on io's thread, now or after a read; call it on io's thread.
  void get(const CpuSet& held, Done done) {
    wanted_ = held;
    if (pins_ && pins_held_ == held) {
      done(*pins_, read_at_);
      if (Clock::now() - read_at_ > kPinsFreshFor) start_read();
      return;
    }
    waiting_.push_back(std::move(done));
    start_read();
  }

 private:
  void start_read() {
    if (reading_) return;
    reading_ = true;
    if (thread_.joinable()) thread_.join();  // finished: it posted its result already
    thread_ = std::thread(
        [self = weak_from_this(), &io = io_, root = root_, facts = facts_, held = wanted_] {
          ForeignPins pins = read_foreign_pins(root, *facts, held);
          asio::post(io, [self, held, pins = std::move(pins), at = Clock::now()]() mutable {
            if (auto reader = self.lock()) reader->finish(held, std::move(pins), at);
          });
        });
  }

  void finish(const CpuSet& held, ForeignPins pins, Clock::time_point at) {
    reading_ = false;
    pins_ = std::move(pins);
    pins_held_ = held;
    read_at_ = at;
    if (held != wanted_) {  // the holds changed while reading: the waiting want the newer
      start_read();
      return;
    }
    for (Done& done : std::exchange(waiting_, {}))
      done(*pins_, read_at_);
  }

  asio::io_context& io_;
  const Sysroot root_;
  const std::shared_ptr<const HostFacts> facts_;
  std::optional<ForeignPins> pins_;
  CpuSet pins_held_, wanted_;
  Clock::time_point read_at_;
  bool reading_ = false;
  std::vector<Done> waiting_;
  std::thread thread_;
};

}  // namespace

nlohmann::json topology_json(const HostFacts& facts, const ForeignPins& pins) {
  // probe's own JSON, so the page reads the shape `hostfit probe -o json` documents.
  const nlohmann::json probed = to_json(facts);
  nlohmann::json cpu = nlohmann::json::object();
  for (const char* key : {"online", "offline", "possible", "isolated"})
    cpu[key] = probed["cpu"].value(key, nlohmann::json());
  nlohmann::json list = nlohmann::json::array();
  for (const ForeignPin& p : pins.pins) {
    list.push_back({{"holder", p.holder},
                    {"source", p.source},
                    {"cpus", p.cpus.to_list()},
                    {"mems", p.mems.to_list()},
                    {"exclusive", p.exclusive}});
  }
  return {{"topology", probed["topology"]},
          {"cpu", cpu},
          {"foreign_pins", {{"pins", list}, {"warnings", pins.warnings}}}};
}

void add_routes(api::Router& router, asio::io_context& io, const Sysroot& root, HostFacts facts,
                std::function<CpuSet()> held) {
  add_page_routes(router);
  // The shape is the daemon's probe at start (hwloc's load is slow); a CPU going offline later
  // shows after a restart. Other tools' pins come and go: PinsReader keeps them at most a few
  // seconds behind.
  auto shared = std::make_shared<const HostFacts>(std::move(facts));
  auto reader = std::make_shared<PinsReader>(io, root, shared);
  router.add(
      "GET", "/v1/node/topology",
      [shared, reader, held = std::move(held)](const api::Request&, api::Reply reply) {
        reader->get(held ? held() : CpuSet{}, [shared, reply = std::move(reply)](
                                                  const ForeignPins& pins, Clock::time_point at) {
          nlohmann::json doc = topology_json(*shared, pins);
          doc["foreign_pins"]["age_ms"] =
              std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - at).count();
          reply(api::json(200, doc));
        });
      });
}

}  // namespace hostfit::web
