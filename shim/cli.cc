#include "shim/cli.h"

#include <cstdio>
#include <cstring>

namespace crshim {

int cli_main(int argc, char** argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
    printf("Version: %s\n", CRSHIM_VERSION);
    return 0;
  }
  fprintf(stderr, "crshim: usage: crshim VERB [OPTIONS]\n");
  return 1;
}

}  // namespace crshim
