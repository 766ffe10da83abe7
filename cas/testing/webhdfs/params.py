"""Parsing of WebHDFS URLs and query parameters, with Hadoop's validation messages."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote

from .errors import RemoteError, bad_param

PREFIX = "/webhdfs/v1"
_PERMISSION = re.compile(r"^[0-7]{1,4}$")


def parse_query(query: str) -> dict[str, str]:
    """Query parameters by lower-cased name; the first occurrence of a name wins.

    HdfsCLI repeats ``user.name`` on DataNode URLs (webhdfs.md §3.4); Hadoop's ParamFilter
    lower-cases names.
    """
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        params.setdefault(name.lower(), value)
    return params


def hdfs_path(url_path: str) -> str | None:
    """The HDFS path a request URL names, or None if it is not under /webhdfs/v1.

    Percent-escapes are decoded but ``+`` is kept (the DataNode's decodeComponent does the same);
    repeated and trailing slashes are dropped as Hadoop's Path does.
    """
    if url_path != PREFIX and not url_path.startswith(PREFIX + "/"):
        return None
    parts = [p for p in unquote(url_path[len(PREFIX):]).split("/") if p]
    return "/" + "/".join(parts)


def check_valid_name(path: str) -> None:
    """DFSUtil.isValidName: no ``.``/``..`` components and no ``:`` anywhere (400)."""
    for part in path.split("/"):
        if part in (".", "..") or ":" in part:
            raise RemoteError("InvalidPathException", f"Invalid path name Invalid file name: {path}")


def get_bool(params: dict[str, str], name: str, default: bool) -> bool:
    """BooleanParam: ``true``/``false`` in any case; anything else is a 400."""
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_param(name, f'Failed to parse "{value}" as a boolean: expected "true" or "false"')


def get_int(params: dict[str, str], name: str, default: int | None, minimum: int) -> int | None:
    """A LongParam/ShortParam with a lower bound; unparsable or too small values are a 400."""
    value = params.get(name)
    if value is None or value == "" or value.lower() == "null":
        return default
    try:
        number = int(value, 10)
    except ValueError:
        raise bad_param(name, f'Failed to parse "{value}" as a radix-10 long integer.') from None
    if number < minimum:
        raise bad_param(name, f"Invalid value {number} < {minimum} = min")
    return number


def get_permission(params: dict[str, str], default: int | None) -> int | None:
    """PermissionParam: an octal string between 0 and 1777."""
    value = params.get("permission")
    if value is None or value == "":
        return default
    if not _PERMISSION.match(value) or int(value, 8) > 0o1777:
        raise bad_param("permission", f'Failed to parse "{value}" as a radix-8 short integer '
                                      f"in the range [0, 1777].")
    return int(value, 8)
