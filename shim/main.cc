#include "shim/cli.h"

int main(int argc, char** argv) { return crshim::cli_main(argc, argv); }
