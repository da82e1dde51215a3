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
  ::syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0);
  // Automatic NUMA balancing (on by default in Debian's kernel) unmaps pages for a while to watch
  // who touches them; move_pages reports those as -EFAULT. Touch them again and ask once more.
  for (int attempt = 0; attempt < 10; ++attempt) {
    std::vector<void*> again;
    std::vector<size_t> index;
    for (size_t i = 0; i < pages.size(); ++i) {
      if (status[i] >= 0) continue;
      static_cast<volatile char*>(pages[i])[0] = 1;
      again.push_back(pages[i]);
      index.push_back(i);
    }
    if (again.empty()) break;
    std::vector<int> retry(again.size(), -1);
    ::syscall(SYS_move_pages, 0, again.size(), again.data(), nullptr, retry.data(), 0);
    for (size_t k = 0; k < again.size(); ++k)
      status[index[k]] = retry[k];
  }
  std::map<int, size_t> per_node;
  for (int s : status)
    ++per_node[s];
  std::printf("nodes");
  for (const auto& [node, count] : per_node)
    std::printf(" %d=%zu", node, count);
  std::printf("\n");
  std::fflush(stdout);
  while (hold)
    ::pause();
  return 0;
}
