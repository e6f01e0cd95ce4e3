#!/usr/bin/python
# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: file_set
short_description: Write several small text files (and make their directories) on the host in one remote call
version_added: 0.2.0
description:
  - Makes each directory of O(directories) exist with the given owner, group and mode, then each file of O(files)
    hold the given content with the given owner, group and mode. A directory or file whose content and attributes
    already match is not touched.
  - The action plugin of the same name renders O(files[].template) and reads O(files[].src) on the controller,
    so one task with N files is one remote call. M(ansible.builtin.template) and M(ansible.builtin.copy) make
    five remote round trips per file even when nothing changes (home directory, temporary directory, stat, file,
    clean-up), which was most of the time of a no-op run of the collection's roles.
  - A file is written to a temporary file in its own directory that is given the final owner, group and mode
    before any content is written to it, then renamed over the destination, so no reader ever sees a partial file,
    nor a file holding content with wider permissions than its final ones.
  - No file's content is ever written to the host's log (journal or syslog), whatever the task's C(no_log). The
    module logs its invocation with each O(files[].content) replaced by C(NOT_LOGGING_PARAMETER).
  - Only for text files (UTF-8). The directory of each file must exist or be one of O(directories) (a missing one
    fails the task before any file is written; in check mode it is reported as a file to create).
  - At least one of O(files) and O(directories) must be non-empty. Everything is checked before anything is changed.
options:
  directories:
    description:
      - Directories to make, in order and before the files, like M(ansible.builtin.file) with C(state=directory).
      - Unlike M(ansible.builtin.file), missing parents are not made. The parent of each directory must exist or be
        an earlier entry of this list; otherwise, or when a path exists and is not a directory, the task fails before
        anything is changed.
      - In check mode nothing is made; a missing directory is reported as changed, and files in it as files to create.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path of the directory on the host (a symbolic link to a directory is followed).
        type: path
        required: true
      mode:
        description:
          - The directory's mode, octal as a string (V("0755")) or symbolic, as M(ansible.builtin.file) takes it.
          - If not given, an existing directory keeps its mode and a new one gets the default (C(0777) less the umask).
        type: raw
      owner:
        description: The directory's owner (name or uid). If not given, an existing directory keeps its owner.
        type: str
      group:
        description: The directory's group (name or gid). If not given, an existing directory keeps its group.
        type: str
  files:
    description: The files to write, in order, after O(directories).
    type: list
    elements: dict
    default: []
    suboptions:
      dest:
        description: Absolute path of the file on the host.
        type: path
        required: true
      content:
        description:
          - The file's content. Exactly one of O(files[].content), O(files[].template) and O(files[].src).
          - Never logged on the host. It is returned only as the diff of a file that is not O(files[].secret) (with
            C(--diff)); the module's arguments are not returned.
        type: str
      template:
        description:
          - A template from the role's C(templates/) directory (found like M(ansible.builtin.template)'s C(src)),
            rendered on the controller with the task's variables plus O(files[].vars).
          - Handled by the action plugin; the module only ever receives O(files[].content).
        type: str
      src:
        description:
          - A file from the role's C(files/) directory, copied as it is. Handled by the action plugin.
        type: str
      vars:
        description: Variables for this file's template only (like a task's C(vars) inside a loop).
        type: dict
      mode:
        description: The file's mode, octal as a string (V("0644")) or symbolic, as M(ansible.builtin.file) takes it.
        type: raw
      owner:
        description: The file's owner (name or uid).
        type: str
      group:
        description: The file's group (name or gid).
        type: str
      force:
        description:
          - If V(false), an existing file keeps its content (its owner, group and mode are still set); for a
            value made once, such as a generated password.
        type: bool
        default: true
      secret:
        description:
          - If V(true), the diff of this file never shows its content, only that the content of a secret file is
            written or changed, and the owner, group and mode that change with it.
          - Use it for every file holding a password, a key or a token. A task's C(no_log) hides the whole result, and
            with it which files changed; O(files[].secret) hides only the contents, so a task can mix secret and
            other files and still show what changed. A task whose O(files[].content) is itself a secret value still
            needs C(no_log), as the task's arguments are shown with C(display_args_to_stdout).
        type: bool
        default: false
attributes:
  action:
    description:
      - Indicates this has a corresponding action plugin so some parts of the options can be executed on the
        controller.
    support: full
    details: The action plugin renders templates and reads sources on the controller.
  async:
    description: Supports being used with the C(async) keyword.
    support: none
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
    details: Reports which directories and files would change and, with diff, how; makes and writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: >-
      One diff per changed directory (state, or owner/group/mode) and per changed file (content, or owner/group/mode).
      A file with O(files[].secret=true) shows no content, only that it changes, with its owner/group/mode changes.
  idempotent:
    description: A second run with the same options reports C(changed=false) and writes nothing.
    support: full
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
author:
  - selfhost.immich contributors (@selfhost)
"""

EXAMPLES = r"""
- name: Write the guard's units
  selfhost.immich.file_set:
    files:
      - dest: /etc/systemd/system/guard.service
        template: guard.service.j2
        owner: root
        group: root
        mode: "0644"
      - dest: /etc/systemd/system/guard.timer
        template: unit.timer.j2
        vars:
          timer_calendar: hourly
        mode: "0644"
  notify: Reload systemd units

- name: Make the application's directories and write its configuration into them
  selfhost.immich.file_set:
    directories:
      - path: /etc/app
        owner: root
        group: root
        mode: "0755"
      - path: /etc/app/conf.d  # its parent is the entry before
        mode: "0750"
    files:
      - dest: /etc/app/conf.d/app.conf
        template: app.conf.j2
        mode: "0640"

- name: Write the password file once
  selfhost.immich.file_set:
    files:
      - dest: /etc/app/db.password
        content: "{{ lookup('ansible.builtin.password', '/dev/null', length=32) }}\n"
        mode: "0600"
        force: false
        secret: true
  no_log: true  # the password is also in the task's arguments
"""

RETURN = r"""
directories:
  description: Each directory's path and whether it changed (made, or its owner, group or mode set), in the order given.
  returned: always
  type: list
  elements: dict
  sample: [{"path": "/etc/app", "changed": true}]
files:
  description: Each file's path and whether it changed, in the order given.
  returned: always
  type: list
  elements: dict
  sample: [{"dest": "/etc/systemd/system/guard.service", "changed": true}]
"""

import grp  # noqa: E402
import os  # noqa: E402
import pwd  # noqa: E402
import stat  # noqa: E402
import tempfile  # noqa: E402
from types import SimpleNamespace  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text  # noqa: E402

FILE_OPTIONS = dict(
    dest=dict(type="path", required=True),
    content=dict(type="str"),
    template=dict(type="str"),
    src=dict(type="str"),
    vars=dict(type="dict"),
    mode=dict(type="raw"),
    owner=dict(type="str"),
    group=dict(type="str"),
    force=dict(type="bool", default=True),
    secret=dict(type="bool", default=False),
)

DIRECTORY_OPTIONS = dict(
    path=dict(type="path", required=True),
    mode=dict(type="raw"),
    owner=dict(type="str"),
    group=dict(type="str"),
)

NOT_LOGGED = "NOT_LOGGING_PARAMETER"  # what AnsibleModule logs for a no_log option
SECRET_BEFORE = "content: (secret, not shown)\n"  # a secret file's content, as its diff shows it
SECRET_AFTER = "content: (secret, changed, not shown)\n"


class FileSetModule(AnsibleModule):
    """AnsibleModule whose invocation, as logged on the host (journal or syslog), holds no file's content.

    A task without no_log makes AnsibleModule log every argument. Marking ``content`` no_log in the argument spec
    would not do: the value of a list option is logged as its repr, where a multi-line content no longer matches the
    value to mask, and every content would be masked wherever it occurs in the result, diffs included.
    """

    def _log_invocation(self) -> None:
        self.log("Invoked with " + " ".join(f"{key}={value}" for key, value in _without_contents(self.params).items()))


def _without_contents(params: dict) -> dict:
    """The module's arguments with each file's content left out (for the host's log and the returned invocation)."""
    return dict(params, files=[dict(spec, content=NOT_LOGGED) for spec in params.get("files") or []])


def _read(path: bytes) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return None


def _attributes_text(values: dict) -> str:
    return "".join(f"{key}: {values[key]}\n" for key in sorted(values))


def _final_mode(module: AnsibleModule, mode: object, base: int) -> int:
    """``mode`` (octal, as an int or a string, or symbolic, applied to ``base``) as a number; ValueError if invalid."""
    if mode is None:
        return base
    if isinstance(mode, int):
        number = mode
    else:
        try:
            number = int(str(mode), 8)
        except ValueError:
            try:
                number = module._symbolic_mode_to_octal(SimpleNamespace(st_mode=stat.S_IFREG | base), str(mode))
            except Exception as error:  # ValueError for a bad letter, others (IndexError) for some bad input
                raise ValueError(f"mode must be in octal or symbolic form ({to_native(error)})") from error
    if number != stat.S_IMODE(number):
        raise ValueError("invalid mode: only permission bits are allowed")
    return number


def _octal(mode: int) -> str:
    return f"0{mode:03o}"  # as AnsibleModule's own diff shows a mode


def _name(ident: int, lookup, attribute: str) -> str:
    try:
        return getattr(lookup(ident), attribute)
    except KeyError:
        return str(ident)


def _attribute_changes(module: AnsibleModule, spec: dict, b_dest: bytes) -> tuple[dict, dict]:
    """The given owner, group and mode that differ from the existing file's: (before, after), as a diff shows them.

    Computed without touching the file (and without failing on an owner not made yet, in check mode).
    """
    old = os.stat(b_dest)
    before = {"mode": _octal(stat.S_IMODE(old.st_mode)), "owner": _name(old.st_uid, pwd.getpwuid, "pw_name"),
              "group": _name(old.st_gid, grp.getgrgid, "gr_name")}
    after = {}
    if spec["mode"] is not None:
        after["mode"] = _octal(_final_mode(module, spec["mode"], stat.S_IMODE(old.st_mode)))
    for key, lookup, attribute in (("owner", pwd.getpwuid, "pw_name"), ("group", grp.getgrgid, "gr_name")):
        if spec[key] is not None:
            after[key] = _name(int(spec[key]), lookup, attribute) if spec[key].isdigit() else spec[key]
    changed = sorted(key for key in after if after[key] != before[key])
    return {key: before[key] for key in changed}, {key: after[key] for key in changed}


def _content_diff(module: AnsibleModule, spec: dict, b_dest: bytes, current: bytes | None) -> dict:
    """The diff of a file whose content is written: the content, or for a secret file only that it changes."""
    dest = spec["dest"]
    headers = {"before_header": dest, "after_header": dest}
    if not spec["secret"]:
        return dict(headers, before=to_text(current or b"", errors="surrogate_or_strict"), after=spec["content"])
    if current is None:
        given = {key: spec[key] for key in ("owner", "group") if spec[key] is not None}
        if spec["mode"] is not None:
            given["mode"] = _octal(_final_mode(module, spec["mode"], 0o644 & ~_umask()))
        return dict(headers, before="state: absent\n",
                    after="state: file\n" + SECRET_BEFORE + _attributes_text(given))
    before, after = _attribute_changes(module, spec, b_dest)
    return dict(headers, before=SECRET_BEFORE + _attributes_text(before), after=SECRET_AFTER + _attributes_text(after))


def _write(module: AnsibleModule, spec: dict, b_dest: bytes, wanted: bytes, replaces: bool) -> None:
    """Write ``wanted`` to a temporary file beside ``b_dest`` that already has the final owner, group and mode
    (mkstemp makes it 0600 and ours; owner and group are set before the mode, as chown clears set-id bits), then
    rename it over ``b_dest``. An attribute not given keeps the replaced file's value, as with copy."""
    old = os.stat(b_dest) if replaces else None
    base = stat.S_IMODE(old.st_mode) if old else 0o644 & ~_umask()
    final = {"mode": _final_mode(module, spec["mode"], base), "secontext": [None, None, None], "attributes": None,
             "owner": spec["owner"] if spec["owner"] is not None or old is None else str(old.st_uid),
             "group": spec["group"] if spec["group"] is not None or old is None else str(old.st_gid)}
    fd, b_tmp = tempfile.mkstemp(dir=os.path.dirname(b_dest), prefix=b".ansible-file-set-")
    try:
        with os.fdopen(fd, "wb") as handle:
            module.set_fs_attributes_if_different(dict(final, path=to_native(b_tmp)), False)  # while still empty
            handle.write(wanted)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(b_tmp, b_dest)
    except BaseException:
        if os.path.exists(b_tmp):
            os.unlink(b_tmp)
        raise


def _one_file(module: AnsibleModule, spec: dict) -> tuple[bool, dict | None]:
    dest = spec["dest"]
    b_dest = to_bytes(dest, errors="surrogate_or_strict")
    wanted = to_bytes(spec["content"], errors="surrogate_or_strict")
    current = _read(b_dest)
    if current is None or (current != wanted and spec["force"]):
        diff = _content_diff(module, spec, b_dest, current) if module._diff else None
        if not module.check_mode:
            _write(module, spec, b_dest, wanted, replaces=current is not None)
        return True, diff
    attributes = {"path": dest, "mode": spec["mode"], "owner": spec["owner"], "group": spec["group"],
                  "secontext": [None, None, None], "attributes": None}
    attribute_diff: dict = {"before": {}, "after": {}}
    changed = module.set_fs_attributes_if_different(attributes, False, diff=attribute_diff)
    diff = None
    if changed and module._diff:
        diff = {"before_header": dest, "after_header": dest,
                "before": _attributes_text(attribute_diff["before"]),
                "after": _attributes_text(attribute_diff["after"])}
    return changed, diff


def _directory_attributes(spec: dict) -> dict:
    """The attributes given for a directory, as its diff shows them (an integer mode in octal, as file shows it)."""
    given = {key: spec[key] for key in ("owner", "group", "mode") if spec[key] is not None}
    if isinstance(given.get("mode"), int):
        given["mode"] = f"{given['mode']:04o}"
    return given


def _one_directory(module: AnsibleModule, spec: dict, path: str) -> tuple[bool, dict | None]:
    """``path``: the directory to make or set (a symbolic link given as ``spec["path"]`` already resolved)."""
    b_path = to_bytes(path, errors="surrogate_or_strict")
    attributes = {"path": path, "mode": spec["mode"], "owner": spec["owner"], "group": spec["group"],
                  "secontext": [None, None, None], "attributes": None}
    if not os.path.isdir(b_path):
        diff = None
        if module._diff:
            diff = {"before_header": spec["path"], "after_header": spec["path"], "before": "state: absent\n",
                    "after": "state: directory\n" + _attributes_text(_directory_attributes(spec))}
        if not module.check_mode:
            os.mkdir(b_path, 0o700)  # no wider than its final mode while it is made
            if spec["mode"] is None:
                os.chmod(b_path, 0o777 & ~_umask())  # as mkdir would without a mode
            module.set_fs_attributes_if_different(attributes, True, expand=False)
        return True, diff
    attribute_diff: dict = {"before": {}, "after": {}}
    changed = module.set_fs_attributes_if_different(attributes, False, diff=attribute_diff, expand=False)
    diff = None
    if changed and module._diff:
        diff = {"before_header": spec["path"], "after_header": spec["path"],
                "before": _attributes_text(attribute_diff["before"]),
                "after": _attributes_text(attribute_diff["after"])}
    return changed, diff


def _check_directories(directories: list[dict]) -> tuple[list[str], list[str]]:
    """The problems of O(directories), and the normalised path of each entry (a link to a directory resolved)."""
    problems, paths = [], []
    for index, spec in enumerate(directories):
        where = f"directories[{index}] ({spec['path']})"
        path = os.path.normpath(spec["path"]) if os.path.isabs(spec["path"]) else spec["path"]
        if not os.path.isabs(path):
            problems.append(f"{where}: path must be an absolute path")
        elif path in paths:
            problems.append(f"{where}: the same path is given twice")
        elif os.path.lexists(path) and not os.path.isdir(path):
            problems.append(f"{where}: {path} exists and is not a directory")
        elif not os.path.isdir(os.path.dirname(path)) and os.path.dirname(path) not in paths:
            problems.append(f"{where}: its parent directory {os.path.dirname(path)} does not exist and is not an "
                            "earlier entry of directories (missing parents are not made)")
        paths.append(path)
    return problems, paths


def _valid_mode(module: AnsibleModule, mode: object) -> bool:
    try:
        _final_mode(module, mode, 0o644)
    except ValueError:
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def main() -> None:
    module = FileSetModule(
        argument_spec=dict(
            directories=dict(type="list", elements="dict", default=[], options=DIRECTORY_OPTIONS),
            files=dict(type="list", elements="dict", default=[], options=FILE_OPTIONS),
        ),
        supports_check_mode=True,
    )
    directories, files = module.params["directories"], module.params["files"]
    invocation = {"module_args": _without_contents(module.params)}  # the default would return every content
    if not directories and not files:
        module.fail_json(msg="give at least one of files and directories")
    problems, directory_paths = _check_directories(directories)
    for index, spec in enumerate(files):
        where = f"files[{index}] ({spec['dest']})"
        if spec["content"] is None:
            problems.append(f"{where}: no content (template and src are rendered by the action plugin)")
        elif not os.path.isabs(spec["dest"]):
            problems.append(f"{where}: dest must be an absolute path")
        elif os.path.isdir(spec["dest"]) or os.path.normpath(spec["dest"]) in directory_paths:
            problems.append(f"{where}: dest is a directory")
        elif not _valid_mode(module, spec["mode"]):
            problems.append(f"{where}: mode {spec['mode']!r} is neither octal nor symbolic (like u=rw,g=r,o=)")
        elif (not os.path.isdir(os.path.dirname(spec["dest"])) and not module.check_mode
              and os.path.normpath(os.path.dirname(spec["dest"])) not in directory_paths):
            problems.append(f"{where}: the directory {os.path.dirname(spec['dest'])} does not exist")
    if len({spec["dest"] for spec in files}) != len(files):
        problems.append("the same dest is given twice")
    if problems:  # before any directory is made or file written
        module.fail_json(msg="; ".join(problems), invocation=invocation)

    directory_results, results, diffs = [], [], []

    def fail(message: str) -> None:
        module.fail_json(msg=message, directories=directory_results, files=results,
                         changed=any(r["changed"] for r in directory_results + results), invocation=invocation)

    for index, spec in enumerate(directories):
        path = directory_paths[index]
        try:  # ansible.builtin.file's follow=true: a link to a directory stands for the directory
            changed, diff = _one_directory(module, spec, os.path.realpath(path) if os.path.islink(path) else path)
        except OSError as error:
            fail(f"{spec['path']}: {to_native(error.strerror or error)}")
        directory_results.append({"path": spec["path"], "changed": changed})
        if diff:
            diffs.append(diff)
    for spec in files:
        if module.check_mode and not os.path.isdir(os.path.dirname(spec["dest"])):
            changed = True  # its directory comes from an earlier task that check mode did not run
            diff = _content_diff(module, spec, b"", None) if module._diff else None
        else:
            try:
                changed, diff = _one_file(module, spec)
            except OSError as error:
                fail(f"{spec['dest']}: {to_native(error.strerror or error)}")
        results.append({"dest": spec["dest"], "changed": changed})
        if diff:
            diffs.append(diff)
    result = {"changed": any(r["changed"] for r in directory_results + results), "directories": directory_results,
              "files": results}
    if diffs:
        result["diff"] = diffs
    module.exit_json(invocation=invocation, **result)


if __name__ == "__main__":
    main()
