"""Reading format version 1 files: a ZIP archive of stored members (fastmlp 0.1's ``save``).

``header.json`` (the header of ``fastmlp._model_file``, ``"format_version": 1``) and one
``arrays/<name>.npy`` per entry of its array table. Kept so old files still load; nothing
writes this format any more. Every size is bounded before anything is allocated: the
ZIP directory (at most 10,000 members, 4 MiB), each member by the file's own size,
``header.json`` (16 MiB), each array by the dtype and shape the header declares.
Compressed or encrypted members are refused, so nothing is ever decompressed.
"""
import io
import json
import struct
import zipfile

import numpy as np

from ._model_file import Invalid, array_table, check_digest, check_header, check_table, plan

__all__ = ["MAGIC", "read"]

MAGIC = b"PK"                    # a version 1 file starts like every ZIP archive
_HEADER = "header.json"
_ARRAY_DIR = "arrays/"
_MAX_HEADER_BYTES = 16 << 20
_NPY_HEADER_SLACK = 1 << 16      # an .npy member may exceed its data by its own header only
_MAX_MEMBERS = 10_000
_MAX_DIRECTORY_BYTES = 4 << 20

_EOCD = struct.Struct("<4s4H2LH")          # end of central directory record
_ZIP64_LOCATOR = struct.Struct("<4sLQL")
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")


def _check_directory(f, size):
    """Bound the ZIP central directory (entries, bytes) before zipfile parses it."""
    tail_len = min(size, _EOCD.size + (1 << 16))
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = len(tail) - _EOCD.size
    if not (pos >= 0 and tail[pos:pos + 4] == b"PK\x05\x06" and tail[-2:] == b"\0\0"):
        pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise Invalid("not a fastmlp model file (not a zip archive, or truncated)")
    entries, cd_size = _EOCD.unpack_from(tail, pos)[4:6]
    loc = pos - _ZIP64_LOCATOR.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        rec = loc - _ZIP64_EOCD.size
        if rec < 0 or tail[rec:rec + 4] != b"PK\x06\x06":
            raise Invalid("corrupt ZIP64 end of central directory")
        entries, _, cd_size = _ZIP64_EOCD.unpack_from(tail, rec)[6:9]
    if entries > _MAX_MEMBERS:
        raise Invalid(f"too many members ({entries}; a fastmlp file holds at most "
                      f"{_MAX_MEMBERS})")
    if cd_size > min(size, _MAX_DIRECTORY_BYTES):
        raise Invalid(f"the ZIP central directory claims {cd_size} bytes (the file has "
                      f"{size}): corrupt or not a fastmlp model file")


def _members(zf, size):
    """{name: ZipInfo}, every member stored, unencrypted, and within the file's size."""
    infos = zf.infolist()
    if len(infos) > _MAX_MEMBERS:
        raise Invalid(f"too many members ({len(infos)})")
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise Invalid("duplicate members in the archive")
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise Invalid(f"member {info.filename!r:.100} is compressed (method "
                          f"{info.compress_type}); fastmlp files hold stored members only")
        if info.flag_bits & 0x1:
            raise Invalid(f"member {info.filename!r:.100} is encrypted")
        if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
            raise Invalid(f"member {info.filename!r:.100} claims {info.file_size} bytes, "
                          f"more than the file holds (truncated or corrupt)")
        total += info.file_size
    if total > size:
        raise Invalid(f"the members claim {total} bytes, more than the file's {size}")
    return dict(zip(names, infos))


def read(f, size):
    """(header, {name: ndarray}, plan) from an open version 1 file of ``size`` bytes."""
    _check_directory(f, size)
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile:
        raise Invalid("not a fastmlp model file (not a zip archive, or truncated)") from None
    with zf:
        by_name = _members(zf, size)
        if _HEADER not in by_name:
            raise Invalid(f"not a fastmlp model file (no {_HEADER})")
        if by_name[_HEADER].file_size > _MAX_HEADER_BYTES:
            raise Invalid(f"{_HEADER} is implausibly large ({by_name[_HEADER].file_size} bytes; "
                          f"at most {_MAX_HEADER_BYTES})")
        try:
            header = json.loads(zf.read(_HEADER).decode("utf-8"))
        except json.JSONDecodeError as exc:
            raise Invalid(f"{_HEADER} is not valid JSON ({exc})") from None
        except RecursionError:
            raise Invalid(f"{_HEADER} is nested too deeply") from None
        check_header(header)
        if header["format_version"] != 1:
            raise Invalid(f"a ZIP archive holds format version 1, not "
                          f"{header['format_version']}")
        specs = array_table(header["arrays"])
        expected = {_HEADER} | {f"{_ARRAY_DIR}{n}.npy" for n in specs}
        unexpected = sorted(set(by_name) - expected)
        if unexpected:
            raise Invalid(f"unexpected members {[u[:100] for u in unexpected[:5]]} (a fastmlp "
                          f"file holds only {_HEADER} and .npy arrays; refusing to load)")
        missing = sorted(expected - set(by_name))
        if missing:
            raise Invalid(f"missing members {missing[:5]}")
        model_plan = plan(header)       # checked against the table before any array is read
        check_table(model_plan, specs)
        arrays = {name: _read_array(zf, by_name[f"{_ARRAY_DIR}{name}.npy"], name, *spec)
                  for name, spec in specs.items()}
    return header, arrays, model_plan


def _read_array(zf, info, name, dtype, shape, nbytes, digest):
    # The member must hold exactly the declared array: an .npy header, then nbytes of data.
    if not nbytes + 10 <= info.file_size <= nbytes + _NPY_HEADER_SLACK:
        raise Invalid(f"array {name}: member holds {info.file_size} bytes, the header declares "
                      f"{dtype.str}{shape} ({nbytes} bytes of data)")
    data = zf.read(info)          # exactly file_size bytes, zip CRC checked
    buf = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            got_shape, fortran, got_dtype = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError, struct.error) as exc:
        raise Invalid(f"array {name}: not a plain .npy array ({exc})") from None
    if got_dtype != dtype or tuple(got_shape) != shape or fortran:
        raise Invalid(f"array {name}: holds {got_dtype.str}{tuple(got_shape)}"
                      f"{' (Fortran order)' if fortran else ''}, the header says "
                      f"{dtype.str}{shape}")
    offset = buf.tell()
    if len(data) - offset != nbytes:
        raise Invalid(f"array {name}: member holds {len(data) - offset} bytes of data, "
                      f"{dtype.str}{shape} needs {nbytes}")
    check_digest(name, memoryview(data)[offset:], digest)
    arr = np.frombuffer(data, dtype=dtype, count=nbytes // dtype.itemsize, offset=offset)
    return arr.reshape(shape).copy()      # writable, owns its memory
