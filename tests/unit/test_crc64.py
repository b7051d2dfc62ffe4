from cosfs.cos import crc64

VECTORS = [
    (b"123456789", 11051210869376104954),
    (b"", 0),
    (b"[Object Content]", 16749565679157681890),
    (b"[Object Content Version 2]", 11596229263574363878),
    (b"[Object Part]", 4510578591875220731),
    (b"[Chunked Content][2nd chunk][3rd chunk][4th chunk]", 7188322482464764960),
]


def test_vectors():
    for data, expected in VECTORS:
        assert crc64.crc64(data) == expected


def test_update_and_combine():
    assert crc64.update(crc64.crc64(b"12345"), b"6789") == 11051210869376104954
    assert crc64.combine(crc64.crc64(b"12345"), crc64.crc64(b"6789"), 4) == 11051210869376104954
    assert crc64.update(0, b"") == 0
    assert crc64.combine(crc64.crc64(b"abc"), 0, 0) == crc64.crc64(b"abc")
    running = 0
    for piece in (b"[Chunked Content]", b"[2nd chunk]", b"[3rd chunk]", b"[4th chunk]"):
        running = crc64.update(running, piece)
    assert running == 7188322482464764960


def test_parse_header():
    assert crc64.parse_header("11051210869376104954") == 11051210869376104954
    assert crc64.parse_header(None) is None
    assert crc64.parse_header("x") is None
    assert crc64.parse_header(str(1 << 64)) is None
