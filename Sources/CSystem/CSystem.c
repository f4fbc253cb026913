// The C shim is header-only except for what glibc declares only under _GNU_SOURCE, which is
// defined here, in this translation unit alone.
#define _GNU_SOURCE
#include <fcntl.h>
#include "CSystem.h"

int csys_start_writeback(int fd, int64_t offset, int64_t count) {
    return sync_file_range(fd, (off64_t)offset, (off64_t)count, SYNC_FILE_RANGE_WRITE);
}
