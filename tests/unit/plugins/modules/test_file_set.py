"""selfhost.immich.file_set's module in-process: what one call writes, and how (the action plugin is covered by
tests/functional/test_file_set_playbook.py through ansible-playbook)."""

from __future__ import annotations

import os
import stat

import pytest
from ansible_collections.selfhost.immich.plugins.modules import file_set
from ansible_collections.selfhost.immich.tests.unit.utils.module_harness import ModuleRunner


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> ModuleRunner:
    return ModuleRunner(monkeypatch)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_secret_file_has_its_final_mode_before_it_appears_under_its_name(run, monkeypatch, tmp_path):
    seen = []
    real_rename = os.rename

    def rename(src, dest):
        seen.append((os.fsdecode(dest), mode(src), open(src).read()))
        real_rename(src, dest)

    monkeypatch.setattr(file_set.os, "rename", rename)
    secret, unit = tmp_path / "secret.env", tmp_path / "a.service"
    result = run(file_set, {"files": [{"dest": str(secret), "content": "KEY=1\n", "mode": "0600"},
                                      {"dest": str(unit), "content": "[Unit]\n", "mode": "0644"}]}).result
    assert seen == [(str(secret), 0o600, "KEY=1\n"), (str(unit), 0o644, "[Unit]\n")]
    assert result["changed"] is True
    assert result["files"] == [{"dest": str(secret), "changed": True}, {"dest": str(unit), "changed": True}]
    assert [d["before_header"] for d in result["diff"]] == [str(secret), str(unit)]
    assert "content" not in str(result.get("invocation", ""))


def test_unchanged_files_are_not_rewritten(run, tmp_path):
    dest = tmp_path / "a.conf"
    dest.write_text("same\n")
    dest.chmod(0o640)
    before = os.stat(dest).st_ino
    result = run(file_set, {"files": [{"dest": str(dest), "content": "same\n", "mode": "0640"}]}).result
    assert result["changed"] is False and "diff" not in result
    assert os.stat(dest).st_ino == before


def test_a_new_content_keeps_the_old_files_mode_when_none_is_given(run, tmp_path):
    dest = tmp_path / "a.conf"
    dest.write_text("old\n")
    dest.chmod(0o600)
    result = run(file_set, {"files": [{"dest": str(dest), "content": "new\n"}]}).result
    assert result["changed"] is True and dest.read_text() == "new\n" and mode(dest) == 0o600
    assert result["diff"][0]["before"] == "old\n" and result["diff"][0]["after"] == "new\n"


def test_check_mode_predicts_without_writing(run, tmp_path):
    (tmp_path / "a").write_text("old\n")
    files = [{"dest": str(tmp_path / "a"), "content": "new\n"},
             {"dest": str(tmp_path / "not-yet" / "b"), "content": "b\n"}]  # its directory comes from an earlier task
    result = run(file_set, {"files": files}, check_mode=True).result
    assert result["changed"] is True and [f["changed"] for f in result["files"]] == [True, True]
    assert (tmp_path / "a").read_text() == "old\n" and not (tmp_path / "not-yet").exists()
    assert [d["after"] for d in result["diff"]] == ["new\n", "b\n"]


def test_force_false_keeps_the_content_but_sets_the_mode(run, tmp_path):
    dest = tmp_path / "password"
    dest.write_text("made once\n")
    dest.chmod(0o644)
    result = run(file_set, {"files": [{"dest": str(dest), "content": "other\n", "mode": "0600", "force": False}]})
    assert result.result["changed"] is True
    assert dest.read_text() == "made once\n" and mode(dest) == 0o600
    assert result.result["diff"] == [{"before_header": str(dest), "after_header": str(dest),
                                      "before": "mode: 0644\n", "after": "mode: 0600\n"}]


def test_a_failed_write_names_the_file_and_leaves_no_temporary_file(run, monkeypatch, tmp_path):
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_set.os, "fsync", fsync)
    files = [{"dest": str(tmp_path / "a"), "content": "a\n"}, {"dest": str(tmp_path / "b"), "content": "b\n"}]
    result = run(file_set, {"files": files}, fails=True).result
    assert result["msg"] == f"{tmp_path / 'b'}: No space left on device"
    assert result["files"] == [{"dest": str(tmp_path / "a"), "changed": True}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_a_missing_directory_fails_before_any_file_is_written(run, tmp_path):
    files = [{"dest": str(tmp_path / "a"), "content": "a\n"}, {"dest": str(tmp_path / "no" / "b"), "content": "b\n"}]
    result = run(file_set, {"files": files}, fails=True).result
    assert result["msg"] == f"files[1] ({tmp_path / 'no' / 'b'}): the directory {tmp_path / 'no'} does not exist"
    assert list(tmp_path.iterdir()) == []


def test_template_and_src_reach_the_module_only_through_the_action_plugin(run, tmp_path):
    result = run(file_set, {"files": [{"dest": str(tmp_path / "a"), "template": "a.j2"}]}, fails=True).result
    assert "no content (template and src are rendered by the action plugin)" in result["msg"]
