"""Output folders: refused before work starts when they cannot be written; no empty folder left behind."""

from __future__ import annotations

import subprocess

import pytest

from labctl.errors import DataError
from labctl.paths import check_writable, made_folders


def test_a_folder_under_a_file_is_refused_naming_both(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DataError, match=r"calibration: cannot create folder .*afile/cal: .*afile is a file"):
        check_writable(tmp_path / "afile" / "cal", "calibration")
    check_writable(tmp_path / "new" / "deeper", "calibration")  # can be created: fine
    assert not (tmp_path / "new").exists()


def test_a_read_only_file_system_is_refused(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k,ro", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("needs `mount -t tmpfs` (root); the file-under-a-file case covers the check without it")
    try:
        with pytest.raises(DataError, match=r"cannot write in .*ro \(Read-only file system\)"):
            check_writable(mount / "cal", "calibration")
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_failed_block_removes_the_folders_it_made_and_only_those(tmp_path):
    (tmp_path / "kept").mkdir()
    with pytest.raises(RuntimeError):
        with made_folders(tmp_path / "kept" / "a" / "b") as folder:
            assert folder.is_dir()
            raise RuntimeError("refused")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"] and not any((tmp_path / "kept").iterdir())
    with pytest.raises(RuntimeError):
        with made_folders(tmp_path / "x" / "y") as folder:
            (folder.parent / "note.txt").write_text("written before the failure")
            raise RuntimeError("refused")
    assert (tmp_path / "x" / "note.txt").exists() and not (tmp_path / "x" / "y").exists()
    with made_folders(tmp_path / "ok") as folder:
        pass
    assert folder.is_dir()


def test_a_file_the_user_wrote_is_text_or_one_error_naming_it(tmp_path):
    from labctl.errors import ConfigError
    from labctl.paths import read_text_file

    picture = tmp_path / "plan.yaml"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(
        ConfigError, match=r"plan.yaml: not a text file \(byte 0 is not UTF-8\); a campaign plan is YAML text"
    ):
        read_text_file(picture, "campaign plan")
    with pytest.raises(ConfigError, match=r"cannot read the truth file: Is a directory"):
        read_text_file(tmp_path, "truth file")
    (tmp_path / "ok.yaml").write_text("count: 3\n")
    assert read_text_file(tmp_path / "ok.yaml", "campaign plan") == "count: 3\n"
