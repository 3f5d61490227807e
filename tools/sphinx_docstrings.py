"""Sphinx extension for the API reference: diffalg's docstrings are plain text in nbdev style
(`name` means code), not reStructuredText. Render `...` as code and escape the characters that
reStructuredText would read as markup (*, |, trailing _), so docstrings never produce warnings."""
import re

_CODE = re.compile(r"(``.*?``|`[^`]*`)")
_TRAILING_UNDERSCORE = re.compile(r"(\w)_(?=\W|$)")


def _escape_text(text):
    text = text.replace("\\", "\\\\").replace("*", "\\*").replace("|", "\\|")
    return _TRAILING_UNDERSCORE.sub(r"\1\\_", text)


def escape_line(line):
    "One docstring line as reStructuredText: code spans kept as literals, everything else escaped."
    parts = _CODE.split(line)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            inner = part.strip("`")
            out.append(f"``{inner}``" if inner else part)
        else:
            out.append(_escape_text(part))
    return "".join(out)


def _process(app, what, name, obj, options, lines):
    lines[:] = [escape_line(line) for line in lines]


def setup(app):
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
