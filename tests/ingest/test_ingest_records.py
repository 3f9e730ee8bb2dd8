"""Record splitting: line numbers, CR/LF, BOM, the last line, quotes, chunk boundaries."""

from __future__ import annotations

import io

import pytest

from orchestration.ingest.records import iter_file_records, iter_records


@pytest.fixture(params=["stream", "mapped"])
def split(request, tmp_path):
    """Records of `data`, read as a stream (gzip) or through a memory map (plain file)."""

    def records(data: bytes, csv_quoting: bool = False, chunk_bytes: int = 1 << 16):
        if request.param == "stream":
            tables = iter_records(io.BytesIO(data), csv_quoting, chunk_bytes)
        else:
            path = tmp_path / "data"
            path.write_bytes(data)
            tables = iter_file_records(path, csv_quoting, chunk_bytes)
        return _rows(tables)

    return records


def _rows(tables):
    out = []
    for table in tables:
        out += zip(
            table.column("line_no").to_pylist(), table.column("raw").to_pylist(), strict=True
        )
    return out


def test_lines_keep_their_newline_and_number(split):
    assert split(b'{"a":1}\n\n{"b":2}\r\n') == [(1, b'{"a":1}\n'), (2, b"\n"), (3, b'{"b":2}\r\n')]


def test_last_line_without_newline_is_a_record(split):
    assert split(b"a\nb") == [(1, b"a\n"), (2, b"b")]


def test_byte_order_mark_is_dropped_once(split):
    assert split(b"\xef\xbb\xbfa\n\xef\xbb\xbfb\n") == [(1, b"a\n"), (2, b"\xef\xbb\xbfb\n")]


def test_empty_stream_has_no_records(split):
    assert split(b"") == []
    assert split(b"\xef\xbb\xbf") == []


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 8])
def test_tiny_chunks_give_the_same_records(split, chunk):
    data = b'{"id": 1}\n{"id": 22}\n\n{"id": 333, "long": "' + b"x" * 50 + b'"}\nlast'
    assert split(data, chunk_bytes=chunk) == split(data, chunk_bytes=1 << 16)


def test_csv_newline_inside_quotes_does_not_end_a_record(split):
    data = b'h1,h2\na,"x\ny"\nb,"say ""hi"""\nc,d'
    assert split(data, csv_quoting=True) == [
        (1, b"h1,h2\n"),
        (2, b'a,"x\ny"\n'),
        (4, b'b,"say ""hi"""\n'),
        (5, b"c,d"),
    ]


@pytest.mark.parametrize("chunk", [1, 4, 7])
def test_csv_tiny_chunks_keep_quoted_records_whole(split, chunk):
    data = b'h\n"a\n\nb"\nc\n"unterminated\nd\n'
    assert split(data, csv_quoting=True, chunk_bytes=chunk) == split(data, csv_quoting=True)
    assert [n for n, _ in split(data, csv_quoting=True)] == [1, 2, 5, 6]


def test_byte_order_mark_is_dropped_with_tiny_chunks(split):
    assert split(b"\xef\xbb\xbfa\nb\n", chunk_bytes=1) == [(1, b"a\n"), (2, b"b\n")]
