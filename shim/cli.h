// Entry point of the crshim binary: parses the command line and runs one verb.
#pragma once

namespace crshim {

int cli_main(int argc, char** argv);

}  // namespace crshim
