"""kafka-python's record batches are checksummed by google-crc32c's C code, correctly."""

from kafka.record import _crc32c, default_records
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

import shared.kafka  # noqa: F401  (installs the checksum)
from shared.kafka import checksum


def test_kafka_python_uses_the_c_checksum():
    assert default_records.calc_crc32c is checksum.crc32c


def test_it_agrees_with_kafka_pythons_own_on_a_view_of_a_buffer():
    data = bytearray(range(256)) * 300
    view = memoryview(data)[21:]
    assert checksum.crc32c(view) == _crc32c.crc(view)


def test_a_batch_it_builds_verifies_and_reads_back():
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    for n in range(50):
        builder.append(n, timestamp=None, key=b"u%d" % n, value=b"v" * n, headers=[])
    batch = DefaultRecordBatch(bytes(builder.build()))
    assert batch.validate_crc()
    assert [r.key for r in batch] == [b"u%d" % n for n in range(50)]
