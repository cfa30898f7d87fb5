// Queued pipe and FIFO contents: copied without consuming them at dump (pipes-data.img, fifo-data.img)
// and written back into the new pipe at restore.
#pragma once

#include <cstdint>
#include <string>

#include "checkpoint/base/result.h"
#include "checkpoint/files/kinds.h"

namespace crshim::files::pipes {

// Everything queued in the pipe behind `read_fd` (a read end), copied with tee(2) so the pipe keeps
// its contents. `what` names the pipe in errors.
Result<std::string> peek_pipe(int read_fd, const std::string& what);

// One data image (pipes-data.img or fifo-data.img) and the per-kind keys used for it.
struct DataImage {
  const char* kind;    // key in DumpFiles::seen() / RestoreFiles::data()
  const char* file;    // image file name
  image::Type type;
};
extern const DataImage kPipeData;
extern const DataImage kFifoData;

// Writes the pipe_data_entry of pipe `pipe_id` (queued bytes and F_GETPIPE_SZ) once per pipe.
// `read_fd` is a read end of it.
Status dump_data(const DataImage& img, uint32_t pipe_id, int read_fd, DumpFiles& files, const std::string& what);
// dump_data() for fd `f` (stolen as `own`, opened with `flags`): the data is read from a read end; a
// task holding only the write end gets one through /proc/PID/fd.
Status dump_data_of(const DataImage& img, uint32_t pipe_id, const OpenFd& f, int own, uint32_t flags,
                    DumpFiles& files, const std::string& what);

// Gives the new pipe behind `write_fd` the saved buffer size and queued bytes of `pipe_id` (loads the
// image on first use; a pipe without an entry stays empty with the default size).
Status restore_data(const DataImage& img, uint32_t pipe_id, int write_fd, RestoreFiles& files,
                    const std::string& what);

}  // namespace crshim::files::pipes
