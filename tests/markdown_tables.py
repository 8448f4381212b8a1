"""Read the pipe tables of a Markdown report back, for comparing printed numbers in tests."""

from typing import Dict, List


def markdown_tables(text: str) -> List[List[Dict[str, str]]]:
    """Every pipe table of a Markdown text, as a list of rows {header: stripped cell}."""
    tables, lines = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            lines.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif lines:
            header, _, *rows = lines  # the second line is the alignment row
            tables.append([dict(zip(header, row, strict=True)) for row in rows])
            lines = []
    return tables
