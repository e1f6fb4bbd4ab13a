#!/usr/bin/env python3
"""Turns README.md into an EDoc overview file, so the generated docs open
with the README's guide: `md2edoc.py README.md doc/overview.edoc`.

Handles the Markdown the README uses: headings, paragraphs, bullet lists
(with nested blocks), pipe tables, fenced code, `code`, **bold** and
[links](url). The output is XHTML, which EDoc accepts in doc text; every
character EDoc would read as markup (@, `, ') is escaped."""
import os
import re
import sys


def escape(text):
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    # EDoc tags and its `quote' markup: keep them literal.
    return text.replace("@", "&#64;").replace("`", "&#96;").replace("'", "&#39;")


def inline(text):
    out = []
    # Code spans first: nothing inside them is markup.
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        if i % 2:
            out.append("<code>" + escape(part) + "</code>")
            continue
        part = escape(part)
        part = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", part)
        part = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part)
        out.append(part)
    return "".join(out)


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def convert(lines):
    """Markdown lines (already dedented) -> list of XHTML strings."""
    html = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        if stripped.startswith("```"):
            body = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            i += 1
            pad = min((indent_of(b) for b in body if b.strip()), default=0)
            html.append("<pre>" + escape("\n".join(b[pad:] for b in body)) + "</pre>")
            continue
        m = re.match(r"(#+)\s+(.*)", stripped)
        if m:
            level = min(len(m.group(1)) + 2, 6)  # EDoc keeps h1 and h2 for itself
            html.append("<h%d>%s</h%d>" % (level, inline(m.group(2)), level))
            i += 1
            continue
        if stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                    rows.append(cells)
                i += 1
            table = ["<table border=\"1\">"]
            for n, cells in enumerate(rows):
                tag = "th" if n == 0 else "td"
                table.append("<tr>" + "".join("<%s>%s</%s>" % (tag, inline(c), tag) for c in cells) + "</tr>")
            table.append("</table>")
            html.append("\n".join(table))
            continue
        if re.match(r"[-*]\s", stripped):
            base = indent_of(line)
            items = []
            while i < len(lines):
                cur = lines[i]
                if cur.strip() and indent_of(cur) == base and re.match(r"[-*]\s", cur.strip()):
                    items.append([cur.strip()[2:]])
                    i += 1
                elif cur.strip() and indent_of(cur) > base:
                    items[-1].append(cur[base + 2:] if len(cur) > base + 2 else cur.strip())
                    i += 1
                elif not cur.strip() and i + 1 < len(lines) and lines[i + 1].strip() and indent_of(lines[i + 1]) > base:
                    items[-1].append("")
                    i += 1
                else:
                    break
            html.append("<ul>" + "".join("<li>" + "\n".join(convert(item)) + "</li>" for item in items) + "</ul>")
            continue
        para = []
        while i < len(lines):
            s = lines[i].strip()
            if not s or s.startswith(("```", "|", "#")) or re.match(r"[-*]\s", s):
                break
            para.append(s)
            i += 1
        html.append("<p>" + inline(" ".join(para)) + "</p>")
    return html


def main():
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        lines = f.read().splitlines()
    title = lines[0].lstrip("# ").strip() if lines and lines[0].startswith("#") else "emmap"
    top = os.path.dirname(os.path.abspath(src))
    with open(os.path.join(top, "VERSION"), encoding="utf-8") as f:
        version = f.read().strip()
    body = convert(lines[1:] if lines and lines[0].startswith("#") else lines)
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    with open(dst, "w", encoding="utf-8") as f:
        f.write("@title %s %s\n@version %s\n@doc\n" % (escape(title), version, version))
        f.write("\n".join(body) + "\n")


if __name__ == "__main__":
    main()
