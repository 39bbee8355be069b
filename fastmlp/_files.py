"""Files on a disk shared with others: open one that may come from anyone (a regular file
only, never blocking), and replace one atomically without following a planted link."""
import os
import stat
import tempfile

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


def replace_atomically(path, write):
    """Replace ``path`` by what ``write(fh)`` writes to a fresh binary file, all or nothing.

    The temporary is made with ``tempfile.mkstemp`` beside ``path`` (``O_EXCL``: never an
    existing file or a planted symlink), given the mode a new file would get under the
    umask, fsynced and renamed over ``path``; on any failure (Ctrl-C included) it is
    removed and ``path`` is left as it was.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), 0o666 & ~_umask())   # mkstemp made it 0600
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:   # KeyboardInterrupt too: never leave the temporary behind
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _umask():
    """The process umask, read without changing it (Linux); 0o022 where it cannot be read."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _fsync_directory(directory):
    """Make the rename durable where the platform allows it (best effort)."""
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)
