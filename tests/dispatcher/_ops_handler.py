"""The handler the operations tests deploy: bytes in, the same bytes reversed out."""


def reverse(args: bytes) -> bytes:
    return args[::-1]
