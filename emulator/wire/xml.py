"""XML text laid out as FreeSWITCH's ``switch_xml_toxml`` lays it out (``conference xml_list``).

A sans-IO renderer: build a tree of :class:`XmlNode` and :func:`render_xml` it.  The layout is
FreeSWITCH's, byte for byte, because clients parse it with their own tolerances (the CppComet
server reads ``xml_list`` with tinyxml2, spec video-call-flow.md 4.2):

* the declaration ``<?xml version="1.0"?>`` and a newline;
* each element on its own line, indented two spaces per level; a leaf's text directly between its
  tags; a parent's closing tag indented like its opening tag;
* text escapes ``& < >`` (and ``\\r``), attribute values also ``" \\n \\t`` as character references.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["XmlNode", "render_xml", "escape"]


class XmlNode:
    """An element: name, attributes in order, text (leaves only) and children."""

    __slots__ = ("attrs", "children", "name", "text")

    def __init__(self, name: str, attrs: Iterable[tuple[str, str]] = (), text: str = "",
                 children: list[XmlNode] | None = None) -> None:
        self.name, self.attrs, self.text = name, list(attrs), text
        self.children = children if children is not None else []

    def add(self, name: str, text: str = "", attrs: Iterable[tuple[str, str]] = ()) -> XmlNode:
        """Append a child element and return it."""
        child = XmlNode(name, attrs, text)
        self.children.append(child)
        return child


_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#xD;"}
_ATTR_ESCAPES = {**_TEXT_ESCAPES, '"': "&quot;", "\n": "&#xA;", "\t": "&#x9;"}


def escape(text: str, attr: bool) -> str:
    """``text`` escaped for element text (``attr=False``) or an attribute value."""
    table = _ATTR_ESCAPES if attr else _TEXT_ESCAPES
    return "".join(table.get(ch, ch) for ch in text)


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.last = ""

    def write(self, s: str) -> None:
        if s:
            self.parts.append(s)
            self.last = s[-1]


def _render(node: XmlNode, depth: int, buf: _Buffer) -> None:
    if buf.last == ">":
        buf.write("\n")
    attrs = "".join(f' {k}="{escape(v, True)}"' for k, v in node.attrs)
    buf.write("  " * depth + f"<{node.name}{attrs}>")
    if node.children:
        for child in node.children:
            _render(child, depth + 1, buf)
    else:
        buf.write(escape(node.text, False))
    if buf.last == "\n":
        buf.write("  " * depth)
    buf.write(f"</{node.name}>\n")


def render_xml(root: XmlNode) -> str:
    """The document: declaration, then ``root`` in switch_xml_toxml's layout."""
    buf = _Buffer()
    buf.write('<?xml version="1.0"?>\n')
    _render(root, 0, buf)
    return "".join(buf.parts)
