"""selfhost.immich.file_set's module in-process: what one call writes, and how (the action plugin is covered by
tests/functional/test_file_set_playbook.py through ansible-playbook)."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import syslog

import pytest
from ansible.module_utils import basic
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
    assert "KEY=1" not in str(result["invocation"]) and "[Unit]" not in str(result["invocation"])


OWNER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
GROUP = grp.getgrgid(pwd.getpwnam(OWNER).pw_gid).gr_name


def test_content_is_written_only_once_the_file_has_its_final_owner_group_and_mode(run, monkeypatch, tmp_path):
    """Opening a file checks its permissions once: a reader who opened the temporary file while it had wider ones
    would read the content written later. So no moment may exist where it holds content, or could be opened, with
    another owner, group or mode than the final ones."""
    dest = tmp_path / "app.env"
    dest.write_text("OLD=1\n")
    dest.chmod(0o644)  # the old file's mode must not pass to the new content on its way to 0600
    final = (0o600, pwd.getpwnam(OWNER).pw_uid, grp.getgrnam(GROUP).gr_gid)
    seen = []  # (what just happened, (mode, uid, gid), size) of the temporary file

    def snapshot(event: str, fd: int | None = None) -> None:
        for path in tmp_path.glob(".ansible-file-set-*"):
            st = os.fstat(fd) if fd is not None else os.stat(path)
            seen.append((event, (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), st.st_size))

    def traced(name: str):
        real = getattr(os, name)

        def call(*args, **kwargs):
            if name == "rename":  # its state as it appears under the final name
                snapshot(name)
            value = real(*args, **kwargs)
            snapshot(name)
            return value
        return call

    class Handle:  # the file object of the temporary file: note its state at the moment content is written
        def __init__(self, real) -> None:
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.real.__exit__(*exc)

        def write(self, data):
            snapshot("write", self.real.fileno())
            return self.real.write(data)

    real_fdopen = os.fdopen
    for name in ("chmod", "chown", "lchown", "fchmod", "fchown", "fsync", "rename"):
        monkeypatch.setattr(os, name, traced(name))
    monkeypatch.setattr(os, "fdopen", lambda *args, **kwargs: Handle(real_fdopen(*args, **kwargs)))
    args = {"files": [{"dest": str(dest), "content": "KEY=1\n", "mode": "0600", "owner": OWNER, "group": GROUP}]}
    assert run(file_set, args).result["changed"] is True
    assert dest.read_text() == "KEY=1\n" and (mode(dest), dest.stat().st_uid, dest.stat().st_gid) == final
    assert [(event, attributes) for event, attributes, _ in seen if event == "write"] == [("write", final)], seen
    with_content = [(event, attributes) for event, attributes, size in seen if size]
    assert [event for event, _ in with_content][-2:] == ["fsync", "rename"], seen
    assert all(attributes == final for _, attributes in with_content), seen


def test_no_content_reaches_the_hosts_log(run, monkeypatch, tmp_path):
    """A task without no_log: AnsibleModule logs its invocation to syslog (or the journal), but not the contents."""
    logged = []
    monkeypatch.setattr(basic, "has_journal", False)  # the same message, through syslog
    monkeypatch.setattr(syslog, "syslog", lambda *args: logged.append(args[-1]))
    files = [{"dest": str(tmp_path / "config.json"), "content": '{"oauth": {"clientSecret": "Fs9Log1"}}\n'},
             {"dest": str(tmp_path / "app.env"), "content": "A=1\nKEY=Fs9Log2\n", "mode": "0600", "secret": True}]
    run(file_set, {"files": files})
    assert len(logged) == 1 and logged[0].startswith("Invoked with files=["), logged
    assert str(tmp_path / "config.json") in logged[0] and "NOT_LOGGING_PARAMETER" in logged[0]
    assert "Fs9Log" not in logged[0] and "clientSecret" not in logged[0], logged


def test_a_secret_files_diff_shows_that_it_changes_not_its_content(run, tmp_path):
    new, old = tmp_path / "new.env", tmp_path / "old.env"
    old.write_text("KEY=Fs9Old\n")
    old.chmod(0o644)
    files = [{"dest": str(new), "content": "KEY=Fs9New\n", "mode": "0600", "secret": True},
             {"dest": str(old), "content": "KEY=Fs9Changed\n", "mode": "0600", "secret": True},
             {"dest": str(tmp_path / "later" / "a.env"), "content": "KEY=Fs9Later\n", "secret": True}]
    diffs = [("state: absent\n", "state: file\ncontent: (secret, not shown)\nmode: 0600\n"),
             ("content: (secret, not shown)\nmode: 0644\n", "content: (secret, changed, not shown)\nmode: 0600\n"),
             ("state: absent\n", "state: file\ncontent: (secret, not shown)\n")]
    for check_mode in (True, False):
        result = run(file_set, {"files": files}, check_mode=check_mode).result
        assert "Fs9" not in str(result), result
        assert [(d["before"], d["after"]) for d in result["diff"]] == diffs
        files.pop()  # its directory does not exist: only check mode takes it
        diffs.pop()
    assert old.read_text() == "KEY=Fs9Changed\n" and mode(old) == 0o600 and mode(new) == 0o600


def test_a_files_diff_shows_its_content(run, tmp_path):
    dest = tmp_path / "app.conf"
    dest.write_text("a=1\n")
    result = run(file_set, {"files": [{"dest": str(dest), "content": "a=2\n", "mode": "0600"}]}).result
    assert result["diff"] == [{"before_header": str(dest), "after_header": str(dest), "before": "a=1\n",
                               "after": "a=2\n"}]


def test_a_symbolic_mode_applies_to_the_old_files_mode_and_a_bad_one_fails_before_anything_is_written(run, tmp_path):
    dest = tmp_path / "a.conf"
    dest.write_text("old\n")
    dest.chmod(0o640)
    run(file_set, {"files": [{"dest": str(dest), "content": "new\n", "mode": "g-r,o+r"}]})
    assert dest.read_text() == "new\n" and mode(dest) == 0o604
    files = [{"dest": str(tmp_path / "b"), "content": "b\n"}, {"dest": str(dest), "content": "x\n", "mode": "0999"}]
    result = run(file_set, {"files": files}, fails=True).result
    assert result["msg"] == f"files[1] ({dest}): mode '0999' is neither octal nor symbolic (like u=rw,g=r,o=)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.conf"] and dest.read_text() == "new\n"


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


# directories: made in order before the files, like ansible.builtin.file state=directory without its missing parents.

def test_a_directory_is_made_with_its_mode_and_owner(run, tmp_path):
    made = tmp_path / "app"
    result = run(file_set, {"directories": [{"path": str(made), "mode": "0750", "owner": OWNER}]}).result
    assert made.is_dir() and mode(made) == 0o750 and pwd.getpwuid(os.stat(made).st_uid).pw_name == OWNER
    assert result["changed"] is True and result["directories"] == [{"path": str(made), "changed": True}]
    assert result["files"] == []
    assert result["diff"] == [{"before_header": str(made), "after_header": str(made), "before": "state: absent\n",
                               "after": f"state: directory\nmode: 0750\nowner: {OWNER}\n"}]


def test_an_existing_directory_with_another_mode_is_changed(run, tmp_path):
    existing = tmp_path / "app"
    existing.mkdir()
    existing.chmod(0o755)
    inode = os.stat(existing).st_ino
    result = run(file_set, {"directories": [{"path": str(existing), "mode": "0700"}]}).result
    assert result["changed"] is True and mode(existing) == 0o700 and os.stat(existing).st_ino == inode
    assert result["diff"] == [{"before_header": str(existing), "after_header": str(existing),
                               "before": "mode: 0755\n", "after": "mode: 0700\n"}]


def test_a_matching_directory_is_not_changed_and_attributes_not_given_are_left_alone(run, tmp_path):
    existing = tmp_path / "app"
    existing.mkdir()
    existing.chmod(0o750)
    (tmp_path / "other").mkdir()
    (tmp_path / "other").chmod(0o701)
    result = run(file_set, {"directories": [{"path": str(existing), "mode": "0750"},
                                            {"path": str(tmp_path / "other") + "/"}]}).result
    assert result["changed"] is False and "diff" not in result
    assert [d["changed"] for d in result["directories"]] == [False, False]
    assert mode(tmp_path / "other") == 0o701


def test_check_mode_makes_no_directory_and_reports_the_files_in_it(run, tmp_path):
    args = {"directories": [{"path": str(tmp_path / "a"), "mode": "0700"}, {"path": str(tmp_path / "a" / "b")}],
            "files": [{"dest": str(tmp_path / "a" / "b" / "f"), "content": "f\n"}]}
    result = run(file_set, args, check_mode=True).result
    assert list(tmp_path.iterdir()) == []
    assert result["changed"] is True
    assert [d["changed"] for d in result["directories"]] == [True, True] and result["files"][0]["changed"] is True
    assert [(d["before"], d["after"]) for d in result["diff"]] == [
        ("state: absent\n", "state: directory\nmode: 0700\n"), ("state: absent\n", "state: directory\n"), ("", "f\n")]


def test_a_missing_parent_fails_before_anything_is_made_or_written(run, tmp_path):
    args = {"directories": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "no" / "b")}],
            "files": [{"dest": str(tmp_path / "f"), "content": "f\n"}]}
    result = run(file_set, args, fails=True).result
    assert result["msg"] == (f"directories[1] ({tmp_path / 'no' / 'b'}): its parent directory {tmp_path / 'no'} does "
                             "not exist and is not an earlier entry of directories (missing parents are not made)")
    assert list(tmp_path.iterdir()) == []
    # Nor in check mode, which would otherwise predict a run that fails.
    assert "does not exist" in run(file_set, args, check_mode=True, fails=True).result["msg"]


def test_a_file_in_the_way_fails_before_anything_is_changed(run, tmp_path):
    (tmp_path / "in-the-way").write_text("x\n")
    args = {"directories": [{"path": str(tmp_path / "a")}, {"path": str(tmp_path / "in-the-way"), "mode": "0700"}],
            "files": [{"dest": str(tmp_path / "f"), "content": "f\n"}]}
    result = run(file_set, args, fails=True).result
    assert result["msg"] == f"directories[1] ({tmp_path / 'in-the-way'}): {tmp_path / 'in-the-way'} exists and is " \
                            "not a directory"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in-the-way"]
    assert (tmp_path / "in-the-way").read_text() == "x\n"


def test_a_file_goes_into_a_directory_made_by_the_same_call(run, tmp_path):
    args = {"directories": [{"path": str(tmp_path / "conf"), "mode": "0700"}],
            "files": [{"dest": str(tmp_path / "conf" / "app.env"), "content": "KEY=1\n", "mode": "0600"}]}
    result = run(file_set, args).result
    assert (tmp_path / "conf" / "app.env").read_text() == "KEY=1\n" and mode(tmp_path / "conf") == 0o700
    assert result["directories"] == [{"path": str(tmp_path / "conf"), "changed": True}]
    assert result["files"] == [{"dest": str(tmp_path / "conf" / "app.env"), "changed": True}]
    again = run(file_set, args).result
    assert again["changed"] is False


def test_nothing_to_do_is_an_error(run):
    assert run(file_set, {}, fails=True).result["msg"] == "give at least one of files and directories"
