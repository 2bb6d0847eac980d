"""The start-up warning for a data directory on ext4 without a journal.

The mount table and the kernel's ext4 directory are files; the tests write their own
so that every case runs on any machine, and one test checks the wiring on this one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.server.test_service import settings_for
from uptake_server.store import open_store
from uptake_server.store.filesystem import mount_of, unjournaled_ext4, warn_if_unjournaled

MOUNTS = """\
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/vda / ext4 rw,relatime 0 0
/dev/vdb /srv/data xfs rw,relatime 0 0
/dev/vdc /srv/data/old\\040copy ext4 rw,relatime 0 0
/dev/loop0 /srv/journaled ext4 rw,relatime 0 0
{mapper} /srv/lvm ext4 rw,relatime 0 0
"""


@pytest.fixture
def system(tmp_path: Path) -> tuple[Path, Path]:
    """A mount table and an ext4 sysfs directory: vda, vdc and dm-3 without a journal."""
    sysfs = tmp_path / "sys-fs-ext4"
    journals = {"vda": "<none>", "vdc": "<none>", "loop0": "812", "dm-3": "<none>"}
    for name, journal in journals.items():
        (sysfs / name).mkdir(parents=True)
        (sysfs / name / "journal_task").write_text(journal + "\n")
    # A device-mapper name is a link to dm-N, as under /dev/mapper.
    (tmp_path / "dm-3").touch()
    mapper = tmp_path / "mapper-vg-data"
    mapper.symlink_to(tmp_path / "dm-3")
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS.format(mapper=mapper))
    return mounts, sysfs


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/var/lib/uptake", "/dev/vda"),  # under / only: ext4 without a journal
        ("/srv/data/store", None),  # the xfs mount over it wins
        ("/srv/data/old copy/store", "/dev/vdc"),  # an escaped space in the mount point
        ("/srv/journaled/store", None),  # ext4 with its journal
        ("/srv/datastore", "/dev/vda"),  # not under /srv/data: a prefix is not a mount
    ],
)
def test_the_mount_that_holds_the_directory_decides(
    system: tuple[Path, Path], path: str, expected: str | None
) -> None:
    mounts, sysfs = system
    assert unjournaled_ext4(Path(path), mounts=mounts, sysfs=sysfs) == expected


def test_a_device_mapper_volume_is_found_by_its_kernel_name(system: tuple[Path, Path]) -> None:
    mounts, sysfs = system
    found = unjournaled_ext4(Path("/srv/lvm/store"), mounts=mounts, sysfs=sysfs)
    assert found is not None and found.endswith("mapper-vg-data")
    (sysfs / "dm-3" / "journal_task").write_text("977\n")
    assert unjournaled_ext4(Path("/srv/lvm/store"), mounts=mounts, sysfs=sysfs) is None


def test_unknown_stays_silent(system: tuple[Path, Path], tmp_path: Path) -> None:
    mounts, sysfs = system
    (sysfs / "vda" / "journal_task").unlink()  # a kernel without the file
    assert unjournaled_ext4(Path("/var/lib/uptake"), mounts=mounts, sysfs=sysfs) is None
    assert unjournaled_ext4(Path("/x"), mounts=tmp_path / "none", sysfs=sysfs) is None
    assert mount_of(Path("/x"), tmp_path / "none") is None


def test_the_warning_names_the_directory_and_the_device(
    system: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    mounts, sysfs = system
    with caplog.at_level(logging.WARNING, logger="uptake_server.store.filesystem"):
        warn_if_unjournaled(Path("/var/lib/uptake"), mounts=mounts, sysfs=sysfs)
        warn_if_unjournaled(Path("/srv/data/store"), mounts=mounts, sysfs=sysfs)  # xfs: silent
    [record] = caplog.records
    assert "/var/lib/uptake" in record.message and "/dev/vda" in record.message
    assert "without a journal" in record.message and "File system" in record.message


def test_opening_an_embedded_store_checks_its_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Whatever this machine's file system is, the warning appears exactly when it applies.
    settings = settings_for(tmp_path / "var")
    with caplog.at_level(logging.WARNING, logger="uptake_server.store.filesystem"):
        store = open_store(settings)
    try:
        expected = unjournaled_ext4(settings.data_path) is not None
        assert any("without a journal" in r.message for r in caplog.records) == expected
    finally:
        store.close()
