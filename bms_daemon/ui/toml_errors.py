"""TOML syntax errors explained: the line, the text on it, and the likely mistake.

tomllib says *where* ("Invalid value (at line 2, column 8)") but not *why*, and the why of a
hand-written configuration is nearly always one of a few slips: a string without quotes, a
table header without its closing bracket, ``True`` for ``true``, a decimal comma, ``:`` for
``=``, a table or key written twice.  Configuration files and scenario files both use this.
"""

from __future__ import annotations

import re
import tomllib

_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_BARE_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_MAX_SHOWN = 60  # characters of the offending line shown


def explain(exc: tomllib.TOMLDecodeError, text: str) -> str:
    """One line: ``line N: <what tomllib says>: `<the line>`; <hint>`` (the hint if any)."""
    message = str(exc)
    match = _POSITION.search(message)
    if match is None:
        return message
    what = message[: match.start()]
    number = int(match.group(1))
    lines = text.splitlines()
    line = lines[number - 1].strip() if 0 < number <= len(lines) else ""
    shown = line if len(line) <= _MAX_SHOWN else line[: _MAX_SHOWN - 3] + "..."
    hint = _hint(what, line, lines)
    declared = re.fullmatch(r"Cannot declare \(([^)]*)\) twice", what)
    if declared:  # "Cannot declare ('gpio', 'lines') twice"
        name = ".".join(re.findall(r"'([^']*)'", declared.group(1)))
        what = f"table [{name}] declared twice"
    where = f"line {number}: {_lower_first(what)}"
    return f"{where}: `{shown}`" + (f"; {hint}" if hint else "") if line else where


def _hint(what: str, line: str, lines: list[str]) -> str:
    key, _, value = (part.strip() for part in line.partition("="))
    if what.startswith("Invalid value"):
        return _value_hint(key, value)
    if what.startswith("Expected ']' at the end of a table"):
        name = line.strip("[ ").split()[0] if line.strip("[ ") else "name"
        return f"a table header needs its closing bracket: [{name.rstrip(']')}]"
    if what.startswith("Illegal character") and value.count('"') % 2:
        return f'the string is not closed: {key} = {value}"'
    if what.startswith("Cannot declare"):
        unclosed = [t for t in lines if t.strip().startswith("[") and "]" not in t]
        if unclosed:
            return f"a table header lacks its closing bracket: {unclosed[0].strip()}"
        return "keep one and put its keys together"
    if what.startswith("Cannot overwrite a value"):
        return f"{key} is set twice in the same table: keep one"
    if what.startswith("Expected '=' after a key"):
        return 'write key = value, with "=" (not ":"), and quote text values'
    if what.startswith("Expected newline or end of document"):
        if re.fullmatch(r"-?\d+,\d+", value):
            return f"numbers take a decimal point: {key} = {value.replace(',', '.')}"
        return "one key = value per line; a comment starts with #"
    return ""


def _value_hint(key: str, value: str) -> str:
    if not value:
        return f'a value is missing after "=", e.g. {key} = "..." or a number'
    if value in ("True", "False", "TRUE", "FALSE", "yes", "no", "on", "off"):
        lowered = "true" if value.lower() in ("true", "yes", "on") else "false"
        return f"true and false are written in lower case: {key} = {lowered}"
    if value.startswith("[") and value.endswith("]"):
        items = [item.strip() for item in value[1:-1].split(",") if item.strip()]
        if items and all(_BARE_WORD.match(item) for item in items):
            quoted = ", ".join(f'"{item}"' for item in items)
            return f"text in a list needs quotes: {key} = [{quoted}]"
    if value.startswith("'") != value.endswith("'"):
        return f"the string is not closed: {key} = {value}'"
    if _BARE_WORD.match(value):
        return f'text values need quotes: {key} = "{value}"'
    return ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
