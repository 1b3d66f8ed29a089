"""Coverage-guided fuzzing (atheris/libFuzzer) of `wsserver.protocol.decode_client_frame`: any
input must give a client frame or a `DecodeError`; an exception is a crash libFuzzer reports.

Run: `python -m tests.hardening.fuzz_decoder NEW_CORPUS_DIR tests/hardening/corpus/decoder
-dict=tests/hardening/corpus/decoder.dict -max_total_time=25` (libFuzzer flags; new inputs go
to the first, writable directory, so the committed seed corpus stays as it is).
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["wsserver", "cattrs"]):
    from wsserver.protocol import CLIENT_FRAMES, DecodeError, decode_client_frame

FRAME_CLASSES = tuple(CLIENT_FRAMES.values())


def test_one_input(data: bytes) -> None:
    for message in (data, data.decode("utf-8", "surrogateescape")):
        answer = decode_client_frame(message)
        if isinstance(answer, DecodeError):
            if not answer.message or (answer.ref is not None and not 0 < len(answer.ref) <= 128):
                raise AssertionError(f"unclear DecodeError {answer!r} for {data[:200]!r}")
        elif not isinstance(answer, FRAME_CLASSES):
            raise AssertionError(f"decode_client_frame returned {answer!r} for {data[:200]!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
