# Copyright: selfhost.immich contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one client for the Hetzner Storage Box API (https://api.hetzner.com/v1), shared by the storagebox* modules.

On top of :class:`ApiClient` (auth, retries, one error format, the connection options) it knows Hetzner's
error body, page/per_page pagination, waiting for asynchronous actions and lookup by id or name. It also holds
the input checks the Hetzner modules share beyond those of :mod:`_api`: the Storage Box password policy, the
sub-account home directory and ``labels_problem``.

Private module_utils file (leading underscore): not a public API of the collection.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from typing import Any

from ansible_collections.selfhost.immich.plugins.module_utils._api import (
    CONTROL_CHARS,
    ApiClient,
    ApiError,
    _short,
    only_one,
    path_segment,
)

# Password policy of Storage Boxes and sub-accounts (docs/decisions.md, Hetzner Storage Box); checked before any
# call so a bad password never reaches the API, and never echoed back in a message.
PASSWORD_SPECIALS = "^°!§$%/()=?+#-.,;:~*@{}_&"
_PASSWORD_CLASSES = (
    ("upper-case letter", set(string.ascii_uppercase + "ÄÖÜ")),
    ("lower-case letter", set(string.ascii_lowercase + "äöüß")),
    ("digit", set(string.digits)),
    ("special character", set(PASSWORD_SPECIALS)),
)
_PASSWORD_ALLOWED = set().union(*(chars for _label, chars in _PASSWORD_CLASSES))
# A sub-account home directory: closed on purpose, narrower than the spec's ^[a-zA-Z0-9 ./_-]+$ (which lets
# through " /etc", "./." = the box root and ".."): relative segments of letters, digits and . _ - only.
_HOME_DIRECTORY = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")

SNAPSHOT_PLAN_KEYS = ("max_snapshots", "minute", "hour", "day_of_week", "day_of_month")


class HetznerClient(ApiClient):
    """Storage Box API client.

    An action is polled after ``poll_interval`` seconds, then at doubling intervals up to ``max_poll_interval``,
    until ``action_timeout`` seconds of waiting have passed.
    """

    vendor = "Hetzner API"
    default_url = "https://api.hetzner.com/v1"
    token_env = ("HETZNER_API_TOKEN", "HCLOUD_TOKEN")
    url_env = ("HETZNER_API_URL",)

    def __init__(self, base_url: str, token: str, action_timeout: float = 600.0, poll_interval: float = 0.5,
                 max_poll_interval: float = 5.0, per_page: int = 50, **kwargs: Any) -> None:
        super().__init__(base_url, token, **kwargs)
        self.action_timeout = action_timeout
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.per_page = per_page

    def describe_error(self, status: int, body: Any) -> tuple[str | None, str]:
        """``{"error": {"code", "message", "details": {"fields": [{"name", "messages"}]}}}`` -> (code, message)."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return None, _short(body)
        message = error.get("message") or "no message"
        fields = (error.get("details") or {}).get("fields") or []
        if fields:
            problems = "; ".join(f"{f.get('name')}: {', '.join(f.get('messages') or ['invalid'])}" for f in fields)
            message += f" ({problems})"
        return error.get("code"), message

    # -- reading -----------------------------------------------------------------------------
    def list_all(self, path: str, key: str, params: dict | None = None) -> list[dict]:
        """Every item of a paginated list, following ``meta.pagination.next_page``."""
        items: list[dict] = []
        page = 1
        while page:
            data = self.get(path, params=dict(params or {}, page=page, per_page=self.per_page))
            items.extend(data[key])
            next_page = ((data.get("meta") or {}).get("pagination") or {}).get("next_page")
            page = next_page if next_page and next_page > page else None
        return items

    def find_box(self, box_id: int | None = None, name: str | None = None) -> dict | None:
        """The Storage Box with this id, else the one with this name; None when there is none."""
        if box_id is not None:
            data = self.get(f"/storage_boxes/{path_segment(box_id, 'Storage Box id')}", accept_404=True)
            return data["storage_box"] if data else None
        return only_one(self.list_all("/storage_boxes", "storage_boxes", {"name": name}), name, "Storage Boxes")

    def subaccounts(self, box_id: int, name: str | None = None) -> list[dict]:
        """Sub-accounts of a box (an unpaginated list), optionally filtered by name."""
        data = self.get(f"/storage_boxes/{path_segment(box_id, 'Storage Box id')}/subaccounts",
                        params={"name": name} if name else None)
        return data["subaccounts"]

    def find_subaccount(self, box_id: int, name: str) -> dict | None:
        return only_one(self.subaccounts(box_id, name), name, f"sub-accounts of Storage Box {box_id}")

    # -- writing -----------------------------------------------------------------------------
    def execute(self, method: str, path: str, body: Any = None, recover: Callable[[], Any] | None = None) -> Any:
        """Send one call; when it starts an action, wait until the action has finished.

        An action call sets absolute values (protection, access flags, a plan, a password), so sending it
        twice does no harm: it may be resent after a lost answer. A create needs ``recover``.
        """
        if recover is None and "/actions/" in path:
            recover = _nothing_found
        data = self.request(method, path, body=body, recover=recover)
        if isinstance(data, dict) and isinstance(data.get("action"), dict):
            data["action"] = self.wait(data["action"], f"{method} {path}")
        return data

    def wait(self, action: dict, label: str) -> dict:
        """Poll ``GET /storage_boxes/actions/{id}`` until the action succeeds; fail clearly otherwise."""
        waited, delay = 0.0, self.poll_interval
        while action["status"] == "running":
            if waited >= self.action_timeout:
                raise ApiError(f"{label} failed: action {action['id']} ({action.get('command')}) "
                               f"still running after {waited:.0f} s")
            self.sleep(delay)
            waited += delay
            delay = min(delay * 2, self.max_poll_interval)
            action = self.get(f"/storage_boxes/actions/{path_segment(action['id'], 'action id')}")["action"]
        if action["status"] == "error":
            error = action.get("error") or {}
            code = error.get("code") or "action_failed"
            message = error.get("message") or "no message"
            raise ApiError(f"{label} failed: {code}: {message} (action {action['id']}, {action.get('command')})",
                           code=code, body=action)
        return action


def _nothing_found() -> None:
    """``recover`` of a call that is safe to resend: there is never anything to look up."""
    return None


# -- input checks done before any call ---------------------------------------------------------
def password_problem(password: str) -> str | None:
    """Why ``password`` breaks the Storage Box password policy, or None. Never quotes the password."""
    if not 12 <= len(password) <= 128:
        return f"it must be 12 to 128 characters long (it has {len(password)})"
    chars = set(password)
    if chars - _PASSWORD_ALLOWED:
        return f"it may only contain a-z, A-Z, ÄÖÜäöüß, digits and the special characters {PASSWORD_SPECIALS}"
    missing = [label for label, allowed in _PASSWORD_CLASSES if not chars & allowed]
    if missing:
        return "it needs at least one " + ", one ".join(missing)
    return None


def home_directory_problem(path: str) -> str | None:
    """Why ``path`` is not a sub-account home directory strictly below the box root, or None.

    ``path`` is quoted back only in the leading-'/' hint, and only when the fixed path is valid: a malformed
    value may hold line breaks or control characters that would garble the message.
    """
    if not path:
        return "home_directory must not be empty: name a directory below the box root, for example immich"
    if path.startswith("/"):
        fixed = path.lstrip("/")
        hint = f": use {fixed!r} instead of {path!r}" if home_directory_problem(fixed) is None else ""
        return "home_directory is relative and must not start with '/'" + hint
    if not _HOME_DIRECTORY.fullmatch(path):
        return ("home_directory must be a relative path of '/'-separated names made of letters, digits and . _ - "
                "(no spaces, line breaks, empty segments or trailing '/'), for example immich/library")
    if {".", ".."} & set(path.split("/")):
        return "home_directory must not contain '.' or '..' segments: it has to name a directory below the box root"
    return None


def labels_problem(labels: dict | None) -> str | None:
    """Why ``labels`` are not flat string pairs (what the API stores), or None."""
    for key, value in (labels or {}).items():
        if not isinstance(value, str) or not key or CONTROL_CHARS.search(f"{key}{value}"):
            return f"labels must map names to plain strings without control characters (see label {key!r})"
    return None
