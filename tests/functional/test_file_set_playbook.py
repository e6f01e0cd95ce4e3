"""selfhost.immich.file_set as ansible-playbook runs it (action plugin + module), on the controller.

The lab and the molecule scenarios run it in every role; these tests pin what the roles rely on: templates render
byte-identical to ansible.builtin.template, a re-run changes nothing, check mode writes nothing, a changed mode
alone is a change, force=false keeps a made-once value, bad input fails before any file is written, and a
file's content never reaches the output unless --diff asks for it (a secret file's not even then); directories are
made before the files in them (none in check mode).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent / "file_set"
SECRET = "Fs9MarkerSecret"


def play(tmp_path: Path, *extra: str, mode: str = "0640", secret: str = SECRET, playbook: Path = HERE / "play.yml",
         fails: bool = False) -> str:
    extra_vars = {"file_set_dir": str(tmp_path), "file_set_secret": secret, "file_set_mode": mode,
                  "file_set_name": "selfhost"}
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1",
               ANSIBLE_CALLBACK_RESULT_FORMAT="json", ANSIBLE_STDOUT_CALLBACK="default")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
         "-e", f"ansible_python_interpreter={sys.executable}", "-e", json.dumps(extra_vars), *extra, str(playbook)],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    output = result.stdout + result.stderr
    assert (result.returncode != 0) == fails, output
    return output


def recap(output: str) -> dict:
    line = re.search(r"^localhost\s+:\s+(.*)$", output, re.M).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def test_renders_like_template_and_reruns_with_no_change(tmp_path):
    first = play(tmp_path)
    assert recap(first)["changed"] == 2  # the set and the builtin comparison
    ours, builtin = ((tmp_path / name).read_bytes().split(b"\n", 1) for name in ("timer.unit", "builtin.unit"))
    assert ours[1] == builtin[1]  # byte for byte after line 1, which names the template's path
    ours = ours[1].decode()
    assert "Kind=timer" in ours and "Line1" in ours
    assert "Description=selfhost plain" in (tmp_path / "plain.unit").read_text()
    assert (tmp_path / "script.sh").read_text().endswith("{{ not templated }}\"\n")
    assert stat.S_IMODE((tmp_path / "plain.unit").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "script.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert (tmp_path / "secret").read_text() == SECRET + "\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ansible-file-set-")]

    again = play(tmp_path, "--diff")
    assert recap(again)["changed"] == 0
    assert '"changed": false' in again and "+++ after" not in again


def test_check_mode_writes_nothing_and_reports_each_file(tmp_path):
    output = play(tmp_path, "--check", "--diff")
    assert recap(output)["changed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert output.count("+++ after: ") == 4
    play(tmp_path)
    (tmp_path / "plain.unit").write_text("edited by hand\n")
    output = play(tmp_path, "--check", "--diff")
    assert recap(output)["changed"] == 1 and "-edited by hand" in output
    assert (tmp_path / "plain.unit").read_text() == "edited by hand\n"


def test_mode_alone_is_a_change_and_force_false_keeps_the_content(tmp_path):
    play(tmp_path)
    output = play(tmp_path, "--diff", mode="0600", secret="another")
    assert recap(output)["changed"] == 1
    assert stat.S_IMODE((tmp_path / "plain.unit").stat().st_mode) == 0o600
    assert "-mode: 0640\n+mode: 0600" in output, output
    assert (tmp_path / "secret").read_text() == SECRET + "\n"  # force: false


def test_content_stays_out_of_the_output_without_diff(tmp_path):
    output = play(tmp_path, "-vvv")
    assert SECRET not in output
    (tmp_path / "secret").unlink()
    output = play(tmp_path, "-vvv", "--check")
    assert SECRET not in output


def test_diff_shows_a_files_content_and_only_that_a_secret_file_changes(tmp_path):
    for extra in (("--check", "--diff"), ("--diff",)):
        output = play(tmp_path, *extra)
        assert recap(output)["changed"] >= 1
        assert "+Description=selfhost plain" in output and "+Kind=timer" in output  # not secret: its content
        assert SECRET not in output
        assert "+++ after: " + str(tmp_path / "secret") in output
        assert "+state: file\n+content: (secret, not shown)\n+mode: 0600" in output, output


def test_directories_are_made_before_the_files_in_them_and_check_mode_makes_none(tmp_path):
    playbook = HERE / "directories.yml"
    output = play(tmp_path, "--check", "--diff", mode="0700", playbook=playbook)
    assert recap(output)["changed"] == 1 and list(tmp_path.iterdir()) == []
    assert output.count("-state: absent") == 2 and "+state: directory\n+mode: 0700" in output, output
    assert output.count("+++ after: ") == 3  # two directories and the file in the second

    output = play(tmp_path, "--diff", mode="0700", playbook=playbook)
    assert recap(output)["changed"] == 1
    assert stat.S_IMODE((tmp_path / "conf").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "conf" / "dynamic").stat().st_mode) == 0o750
    assert "Description=selfhost plain" in (tmp_path / "conf" / "dynamic" / "plain.unit").read_text()

    assert recap(play(tmp_path, playbook=playbook, mode="0700"))["changed"] == 0
    output = play(tmp_path, "--check", "--diff", mode="0755", playbook=playbook)
    assert recap(output)["changed"] == 1 and "-mode: 0700\n+mode: 0755" in output, output
    assert stat.S_IMODE((tmp_path / "conf").stat().st_mode) == 0o700


@pytest.mark.parametrize("files, message", [
    ([{"dest": "{{ file_set_dir }}/a", "content": "x", "template": "unit.j2"}], "exactly one of content"),
    ([{"dest": "{{ file_set_dir }}/a", "content": "x", "mdoe": "0644"}], "unknown keys mdoe"),
    ([{"dest": "{{ file_set_dir }}/a", "content": "x", "vars": {"a": 1}}], "vars only applies to a template"),
    ([{"dest": "{{ file_set_dir }}/a", "template": "missing.j2"}], "missing.j2"),
    ([{"dest": "{{ file_set_dir }}/a", "content": "x"}, {"dest": "relative", "content": "y"}], "absolute path"),
    ([{"dest": "{{ file_set_dir }}/a", "content": "x"}, {"dest": "{{ file_set_dir }}/no/b", "content": "y"}],
     "does not exist"),
    ([{"dest": "{{ file_set_dir }}/a", "content": "x"}, {"dest": "{{ file_set_dir }}/a", "content": "y"}],
     "the same dest is given twice"),
    ({"directories": [{"path": "{{ file_set_dir }}/d", "mdoe": "0755"}]}, "unknown keys mdoe"),
    ({"directories": [{"path": "{{ file_set_dir }}/d"}, {"path": "{{ file_set_dir }}/no/e"}],
      "files": [{"dest": "{{ file_set_dir }}/d/a", "content": "x"}]}, "no does not exist and is not an earlier entry"),
    ({"files": [], "directories": []}, "give at least one of files"),
])
def test_bad_input_fails_before_any_file_is_written(tmp_path, files, message):
    playbook = tmp_path / "bad.yml"
    args = files if isinstance(files, dict) else {"files": files}
    playbook.write_text(json.dumps([{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Bad set", "selfhost.immich.file_set": args}]}]))
    out = tmp_path / "out"
    out.mkdir()
    output = play(out, playbook=playbook, fails=True)
    assert message in output, output
    assert list(out.iterdir()) == []
    assert "Traceback" not in output
