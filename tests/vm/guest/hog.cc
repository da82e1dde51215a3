// A workload for the guest tests: touches memory and tells on which NUMA nodes it landed.
//   vm_hog MIB            touch MIB MiB of anonymous memory, print "nodes N=pages ...", exit 0
//   vm_hog MIB hold       the same, then sleep until killed
// Node of each page from move_pages(2) with no target nodes (a query), so no libnuma is needed.
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: vm_hog MIB [hold]\n");
    return 2;
  }
  const size_t bytes = std::strtoull(argv[1], nullptr, 10) << 20;
  const bool hold = argc > 2 && std::string(argv[2]) == "hold";
  const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto* mem = static_cast<char*>(
      ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (mem == MAP_FAILED) {
    std::perror("vm_hog: mmap");
    return 1;
  }
  for (size_t off = 0; off < bytes; off += page)
    mem[off] = 1;
  std::vector<void*> pages;
  for (size_t off = 0; off < bytes; off += page)
    pages.push_back(mem + off);
  std::vector<int> status(pages.size(), -1);
  std::map<int, size_t> per_node;
  if (::syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0) == 0) {
    for (int s : status)
      ++per_node[s];
  }
  std::printf("nodes");
  for (const auto& [node, count] : per_node)
    std::printf(" %d=%zu", node, count);
  std::printf("\n");
  std::fflush(stdout);
  while (hold)
    ::pause();
  return 0;
}
