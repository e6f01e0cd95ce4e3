# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Action plugin of selfhost.immich.file_set: render and read every file on the controller, then one module call.

The directories are passed through as they are (after a check of their keys); the module makes them before it
writes the files.

Templates are rendered as ansible.builtin.template renders them in the running ansible-core (same search path,
trim_blocks, the template_* variables), through public APIs only, so moving a task from template to file_set leaves
the written files byte-identical, on every ansible-core that meta/runtime.yml allows (2.17 and later).
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible.template import generate_ansible_template_vars
from ansible_collections.selfhost.immich.plugins.modules.file_set import DIRECTORY_OPTIONS, FILE_OPTIONS

try:  # ansible-core 2.19 and later: only text trusted as a template is rendered
    from ansible.template import trust_as_template
except ImportError:  # 2.17 and 2.18: every string is a template
    trust_as_template = None
try:  # 2.17 and 2.18, whose template action names the environment (2.19 has no such class here)
    from ansible.template import AnsibleEnvironment
except ImportError:
    AnsibleEnvironment = None

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
        text = self._read_text(where, source)
        if given == ["src"]:
            out["content"] = text
            return out
        searchpath = list(task_vars.get("ansible_search_path", [])) + [self._loader._basedir, os.path.dirname(source)]
        searchpath = [path for base in searchpath for path in (os.path.join(base, "templates"), base)]
        template_vars = dict(task_vars)
        generated = generate_ansible_template_vars(spec["template"], source, spec["dest"])
        if trust_as_template is not None and "ansible_managed" in template_vars:
            del generated["ansible_managed"]  # since 2.19, template keeps a user's own ansible_managed
        template_vars.update(generated)
        template_vars.update(spec.get("vars") or {})
        out["content"] = self._template(text, searchpath, template_vars)
        return out

    def _read_text(self, where: str, source: str) -> str:
        """A found file's text (decrypted if vaulted), as the running ansible-core's template action reads it."""
        if hasattr(self._loader, "get_text_file_contents"):  # 2.19 and later
            return self._loader.get_text_file_contents(source)
        real = self._loader.get_real_file(source)
        try:
            with open(real, "rb") as handle:
                return to_text(handle.read(), errors="surrogate_or_strict")
        except UnicodeError as error:
            raise AnsibleActionFail(f"{where}: {source} is not UTF-8 text") from error
        finally:
            self._loader.cleanup_tmp_file(real)

    def _template(self, text: str, searchpath: list[str], template_vars: dict) -> str:
        """``text`` rendered as the running ansible-core's template action renders a template (its defaults:
        trim_blocks, no lstrip_blocks, newline \\n, backslashes as they are)."""
        if trust_as_template is not None:
            templar = self._templar.copy_with_new_env(searchpath=searchpath, available_variables=template_vars)
            content = templar.template(trust_as_template(text), escape_backslashes=False,
                                       overrides=dict(trim_blocks=True, lstrip_blocks=False, newline_sequence="\n"))
        else:
            templar = self._templar.copy_with_new_env(environment_class=AnsibleEnvironment, searchpath=searchpath,
                                                      newline_sequence="\n", available_variables=template_vars)
            content = templar.do_template(text, preserve_trailing_newlines=True, escape_backslashes=False,
                                          overrides=dict(trim_blocks=True, lstrip_blocks=False))
        return "" if content is None else to_text(content)
