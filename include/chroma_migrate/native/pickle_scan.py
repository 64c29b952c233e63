"""Walk a pickle's opcodes without building anything, before the Unpickler may allocate for it.

The restricted Unpickler stops code execution, not memory exhaustion: a 9-byte file whose one
`LONG_BINPUT` names memo slot 2**27 makes CPython grow its memo array to a gigabyte, a length
prefix can promise gigabytes (CPython allocates a BINBYTES8 before it reads it), and a pickle
of a million tiny objects costs a hundred times its size in Python objects. This scan bounds
all three against the file itself and (when the caller knows it) the hnswlib header's element
count, reading only the opcode stream: `pickle_out_of_bounds`.

A stream that is merely broken (an unknown opcode, no STOP) is left to the Unpickler, which
fails at the same place without allocating, as `pickle_unreadable`; so is a length or frame
running past the end of the file, which is what a truncated copy looks like.
"""

from __future__ import annotations

import hashlib
import pickletools
import struct
from pathlib import Path

from chroma_migrate.native.errors import CorruptDatabaseError

# Opcodes that neither create an object nor grow a container: everything else counts against the bound.
_BOOKKEEPING = {"MARK", "POP", "POP_MARK", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "FRAME", "PROTO", "STOP",
                "GET", "BINGET", "LONG_BINGET", "DUP"}
_MEMO_PUT = {"PUT", "BINPUT", "LONG_BINPUT"}
# Argument layouts, from pickletools' own table: n >= 0 fixed bytes; the rest as below.
_UP_TO_NEWLINE, _LEN1, _LEN4, _LEN4U, _LEN8U = (pickletools.UP_TO_NEWLINE, pickletools.TAKEN_FROM_ARGUMENT1,
                                                pickletools.TAKEN_FROM_ARGUMENT4, pickletools.TAKEN_FROM_ARGUMENT4U,
                                                pickletools.TAKEN_FROM_ARGUMENT8U)
_LENGTH_WIDTH = {_LEN1: 1, _LEN4: 4, _LEN4U: 4, _LEN8U: 8}
_NUMBERED = _MEMO_PUT | {"FRAME"}  # opcodes whose fixed-size argument the scan reads as a number
_OPCODES = {op.code.encode("latin-1")[0]: op for op in pickletools.opcodes}
# The fast path's opcodes, by byte: strings by the width of their length prefix, numbers and
# SETITEMS by their fixed argument size (each creates an object or grows a dict).
_BINUNICODE, _SHORT_BINUNICODE = ord("X"), 0x8C
_FIXED = {ord("J"): 4, ord("K"): 1, ord("M"): 2, ord("u"): 0, ord("N"): 0, ord("}"): 0}  # BININT*, SETITEMS, ...
_MARK, _MEMOIZE_CODE = ord("("), 0x94
_U4 = struct.Struct("<I").unpack_from
OBJECTS_PER_ELEMENT = 16  # a real id map needs about 8 opcodes per element (three maps, one id string each)
OBJECTS_SLACK = 4096  # the object around the maps, its attribute names, a few empty maps


def scan_pickle(data: bytes, path: Path, max_elements: int | None = None) -> int:
    """Raise `pickle_out_of_bounds` (naming what and where) unless every memo index, length and frame fits
    the file, and (with `max_elements`) the objects it would create fit that many index elements.
    Returns the number of object-creating opcodes."""
    size, position, objects, memo = len(data), 0, 0, 0
    limit = None if max_elements is None else OBJECTS_PER_ELEMENT * max(0, max_elements) + OBJECTS_SLACK
    bound = size + 1 if limit is None else limit  # objects beyond it are refused (every opcode is a byte at least)

    def refuse(problem: str) -> CorruptDatabaseError:
        return CorruptDatabaseError("pickle_out_of_bounds", path, f"is refused before unpickling: {problem}")

    def cut(problem: str) -> CorruptDatabaseError:
        return CorruptDatabaseError("pickle_unreadable", path, f"cannot be read: {problem} (the file is cut short "
                                                               "or overwritten)")

    while position < size:
        code = data[position]
        # The opcodes an id map is made of (ids, labels, their dicts), handled inline: they are nearly
        # every opcode of a real file, and this saves the general path's lookups (about 2x faster).
        # Whatever does not fit the file goes to the general path below, which says why.
        end = -1
        if code == _BINUNICODE:
            if position + 5 <= size:
                end = position + 5 + _U4(data, position + 1)[0]
        elif code == _SHORT_BINUNICODE:
            if position + 2 <= size:
                end = position + 2 + data[position + 1]
        elif code in _FIXED:
            end = position + 1 + _FIXED[code]
        if 0 <= end <= size:
            position, objects = end, objects + 1
            if objects > bound:
                raise refuse(_too_many(limit, max_elements))
            continue
        if code == _MARK:
            position += 1
            continue
        if code == _MEMOIZE_CODE:
            position, memo = position + 1, memo + 1
            continue
        start = position
        op = _OPCODES.get(data[position])
        if op is None:
            return objects  # the Unpickler stops right here too, with its own message
        position += 1
        argument, position = _argument(data, position, op, start, cut)
        if position < 0:
            return objects
        name = op.name
        if name == "STOP":
            return objects
        if name in _MEMO_PUT:
            index = argument
            if index > memo:  # a pickler numbers its memo slots in order
                raise refuse(f"{name} at byte {start} names memo slot {index} after {memo} were filled; the memo "
                             "would be allocated far beyond what the file holds")
            memo = max(memo, index + 1)
        elif name == "MEMOIZE":
            memo += 1
        elif name == "FRAME" and argument > size - position:
            raise cut(f"FRAME at byte {start} announces {argument} bytes, {size - position} follow")
        if name not in _BOOKKEEPING:
            objects += 1
            if limit is not None and objects > limit:
                raise refuse(_too_many(limit, max_elements))
    return objects  # no STOP: the Unpickler reports the truncation


def _too_many(limit: int, max_elements: int | None) -> str:
    return (f"it creates more than {limit} objects, more than an id map of the {max_elements} elements "
            "header.bin counts can need")


def _argument(data: bytes, position: int, op: pickletools.OpcodeInfo, start: int, cut) -> tuple[int, int]:
    """(the integer argument for memo/frame opcodes, else 0; the position after the argument, -1 when the file
    ends inside it, which the Unpickler reports itself)."""
    size = len(data)
    if op.arg is None:
        return 0, position
    n = op.arg.n
    if n >= 0:
        if position + n > size:
            return 0, -1
        value = int.from_bytes(data[position:position + n], "little") if op.name in _NUMBERED else 0
        return value, position + n
    if n == _UP_TO_NEWLINE:
        lines = 2 if op.name in ("GLOBAL", "INST") else 1
        end = position
        for _ in range(lines):
            end = data.find(b"\n", end)
            if end < 0:
                return 0, -1
            end += 1
        text = data[position:end - 1]
        if op.name == "PUT":
            try:
                return int(text), end
            except ValueError:
                return 0, -1  # not a number: the Unpickler refuses it
        return 0, end
    width = _LENGTH_WIDTH[n]
    if position + width > size:
        return 0, -1
    length = int.from_bytes(data[position:position + width], "little", signed=n == _LEN4)
    position += width
    if length < 0 or length > size - position:
        raise cut(f"{op.name} at byte {start} announces {length} bytes, {size - position} follow")
    return 0, position + length


_PASSED: set[tuple[bytes, int, int | None]] = set()  # digests of pickles this process has already scanned
_PASSED_LIMIT = 256


def content_key(data: bytes, max_elements: int | None) -> tuple[bytes, int, int | None]:
    """What identifies a pickle's verdict (and its loaded map): a BLAKE2b digest of the bytes, their
    length, and the element bound they were checked against."""
    return hashlib.blake2b(data, digest_size=16).digest(), len(data), max_elements


def scan_pickle_once(data: bytes, path: Path, max_elements: int | None = None,
                     key: tuple[bytes, int, int | None] | None = None) -> None:
    """`scan_pickle`, skipped for bytes this process already scanned with the same bound.

    One verification opens the same segment's id map several times (the reader, the health check,
    the graph walks); the scan is a pure-Python opcode walk (about 0.6 s at 50,000 ids), the digest
    of the same bytes a few milliseconds. Only a passed scan is remembered; the key is the content,
    so a file changed between two opens is scanned again."""
    key = key or content_key(data, max_elements)  # the caller's, when it digested the bytes already
    if key in _PASSED:
        return
    scan_pickle(data, path, max_elements)
    if len(_PASSED) >= _PASSED_LIMIT:
        _PASSED.clear()
    _PASSED.add(key)
