"""The hand-written RetryInfo decoder agrees with the reference google.rpc encoder."""

from __future__ import annotations

from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st

from uptake._status import retry_delay


def encoded_status(*details: object, message: str = "store down") -> bytes:
    """Serialize a google.rpc.Status with the given detail messages, as a server would."""
    status = status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)  # type: ignore[arg-type]
        status.details.append(packed)
    return status.SerializeToString()


def retry_info(seconds: int, nanos: int = 0) -> error_details_pb2.RetryInfo:
    """Return a RetryInfo message."""
    return error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=seconds, nanos=nanos)
    )


@given(
    seconds=st.integers(min_value=0, max_value=10**6),
    nanos=st.integers(min_value=0, max_value=999_999_999),
    message=st.text(max_size=200),
)
def test_decodes_the_retry_delay(seconds: int, nanos: int, message: str) -> None:
    delay = retry_delay(encoded_status(retry_info(seconds, nanos), message=message))
    assert delay is not None
    assert abs(delay - (seconds + nanos / 1e9)) < 1e-6


def test_finds_retry_info_among_other_details() -> None:
    other = error_details_pb2.ErrorInfo(reason="STORE_DOWN", domain="uptake")
    quota = error_details_pb2.QuotaFailure()
    assert retry_delay(encoded_status(other, retry_info(2, 500_000_000), quota)) == 2.5


def test_no_retry_info_means_no_delay() -> None:
    assert retry_delay(encoded_status()) is None
    assert retry_delay(encoded_status(error_details_pb2.ErrorInfo(reason="X"))) is None
    assert retry_delay(b"") is None


def test_a_negative_delay_is_ignored() -> None:
    assert retry_delay(encoded_status(retry_info(-5))) is None


@given(st.binary(max_size=300))
def test_never_raises_on_garbage(data: bytes) -> None:
    delay = retry_delay(data)
    assert delay is None or delay >= 0


@given(st.integers(min_value=1, max_value=40))
def test_truncated_input_never_raises(cut: int) -> None:
    data = encoded_status(retry_info(3, 1))
    assert retry_delay(data[:-cut]) in (None, 3.000000001)
