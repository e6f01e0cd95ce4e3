# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of selfhost.immich.file_set: render and read every file on the controller, then one module call.

The directories are passed through as they are (after a check of their keys); the module makes them before it
writes the files.

Templates are rendered as ansible.builtin.template renders them (same search path, trim_blocks, the template_*
variables), so moving a task from template to file_set leaves the written files byte-identical.
"""

from __future__ import annotations

import os

from ansible._internal._templating import _template_vars
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from ansible_collections.selfhost.immich.plugins.modules.file_set import DIRECTORY_OPTIONS, FILE_OPTIONS

SOURCES = ("content", "template", "src")
KEYS = frozenset(FILE_OPTIONS)  # one list of a file's keys: the module's argument spec
# Each list's naming key and allowed keys (a directory's are passed to the module as they are).
ENTRIES = {"files": ("dest", KEYS), "directories": ("path", frozenset(DIRECTORY_OPTIONS))}


class ActionModule(ActionBase):

    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("files", "directories"))
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp
        files = self._task.args.get("files")
        directories = self._task.args.get("directories")
        files = [] if files is None else files
        directories = [] if directories is None else directories
        if not isinstance(files, list):
            raise AnsibleActionFail("files must be a list of {dest, content|template|src, ...}")
        if not isinstance(directories, list):
            raise AnsibleActionFail("directories must be a list of {path, mode, owner, group}")
        if not files and not directories:
            raise AnsibleActionFail("give at least one of files ({dest, content|template|src, ...}) and "
                                    "directories ({path, mode, owner, group})")
        for index, spec in enumerate(directories):
            self._where("directories", index, spec)
        rendered = []
        for index, spec in enumerate(files):
            rendered.append(self._render(index, spec, task_vars))
        module_args = {"files": rendered}
        if directories:
            module_args["directories"] = directories
        module_result = self._execute_module(module_name="selfhost.immich.file_set",
                                             module_args=module_args, task_vars=task_vars)
        module_result.pop("invocation", None)  # holds every file's content
        result.update(module_result)
        return result

    @staticmethod
    def _where(kind: str, index: int, spec: object) -> str:
        """Where an entry of files or directories is, for messages, once its shape and keys are checked."""
        name_key, allowed = ENTRIES[kind]
        if not isinstance(spec, dict) or not isinstance(spec.get(name_key), str):
            raise AnsibleActionFail(f"{kind}[{index}] must be a dict with a {name_key}")
        where = f"{kind}[{index}] ({spec[name_key]})"
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise AnsibleActionFail(f"{where}: unknown keys {', '.join(unknown)}; "
                                    f"allowed: {', '.join(sorted(allowed))}")
        return where

    def _render(self, index: int, spec: object, task_vars: dict) -> dict:
        where = self._where("files", index, spec)
        given = [key for key in SOURCES if spec.get(key) is not None]
        if len(given) != 1:
            raise AnsibleActionFail(f"{where}: give exactly one of content, template and src")
        if spec.get("vars") is not None and "template" not in given:
            raise AnsibleActionFail(f"{where}: vars only applies to a template")
        # What the module writes with; the sources and vars are turned into content here.
        out = {key: spec[key] for key in KEYS.difference(SOURCES, ("vars",)) if spec.get(key) is not None}
        if given == ["content"]:
            out["content"] = to_text(spec["content"])
            return out
        try:
            source = self._find_needle("templates" if given == ["template"] else "files", spec[given[0]])
        except AnsibleError as error:
            raise AnsibleActionFail(f"{where}: {to_text(error)}") from error
        text = self._loader.get_text_file_contents(source)
        if given == ["src"]:
            out["content"] = text
            return out
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader._basedir, os.path.dirname(source)]
        searchpath = [path for base in searchpath for path in (os.path.join(base, "templates"), base)]
        template_vars = dict(task_vars)
        template_vars.update(_template_vars.generate_ansible_template_vars(
            path=spec["template"], fullpath=source, dest_path=spec["dest"],
            include_ansible_managed="ansible_managed" not in template_vars))
        template_vars.update(spec.get("vars") or {})
        templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=template_vars)
        content = templar.template(trust_as_template(text), escape_backslashes=False,
                                   overrides=dict(trim_blocks=True, lstrip_blocks=False, newline_sequence="\n"))
        out["content"] = "" if content is None else to_text(content)
        return out
