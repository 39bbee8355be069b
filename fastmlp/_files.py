"""Opening a file that may come from anyone: a regular file only, and never blocking."""
import os
import stat

_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
          | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))


def open_regular(path):
    """``path`` opened for binary reading if it is a regular file; else a ValueError that
    says what it is ("is a FIFO, not a regular file").

    Opened with O_NONBLOCK, so a FIFO with no writer cannot hang the open, then
    checked with ``fstat`` on the open descriptor (no window for a swap by rename).
    A missing file raises FileNotFoundError as ``open`` would.
    """
    try:
        fd = os.open(path, _FLAGS)
    except IsADirectoryError:
        raise ValueError("is a directory, not a regular file") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a special file")
            raise ValueError(f"is {what}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
