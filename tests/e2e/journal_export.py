#!/usr/bin/env python3
"""Journal entries in the journal export format, for systemd-journal-remote to
write real journal files from (journald need not run).

usage: journal_export.py FIRST LAST TAG
Entries FIRST..LAST have MESSAGE "TAG entry N". Entry FIRST also carries a
binary field (not UTF-8) and a field given twice; one more after LAST has a
MESSAGE of 70,000 bytes, longer than an event may be. Timestamps are 2N (and
2 LAST + 1): the journal takes entries of two files with the same boot,
monotonic and realtime stamps for one.
"""
import struct
import sys


def text_field(name, value):
    return b"%s=%s\n" % (name, value)


def binary_field(name, value):
    return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"


def entry(stamp, fields):
    head = [
        text_field(b"__REALTIME_TIMESTAMP", b"%d" % (1_800_000_000_000_000 + stamp)),
        text_field(b"__MONOTONIC_TIMESTAMP", b"%d" % stamp),
        text_field(b"_BOOT_ID", b"6d1f0c0e5b3f4a1e9c2d7b8a9e0f1a2b"),
        text_field(b"_HOSTNAME", b"web04"),
        text_field(b"SYSLOG_IDENTIFIER", b"journal-test"),
        text_field(b"PRIORITY", b"6"),
    ]
    return b"".join(head + fields) + b"\n"


def main():
    first, last, tag = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
    out = sys.stdout.buffer
    for number in range(first, last + 1):
        fields = [text_field(b"MESSAGE", b"%s entry %d" % (tag, number))]
        if number == first:
            fields += [binary_field(b"BLOB", b"\xff\xfe\x00bin"), text_field(b"TWICE", b"one"),
                       text_field(b"TWICE", b"two")]
        out.write(entry(2 * number, fields))
    out.write(entry(2 * last + 1, [text_field(b"MESSAGE", b"%s oversized " % tag + b"x" * 70_000)]))


main()
